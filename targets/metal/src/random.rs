//! The runtimes' random numbers: ChaCha20 seeded once from the CPU (RDSEED,
//! else RDRAND) or, on a CPU without either, from a seed a driver read from a
//! device at boot (virtio-rng). With neither the unikernel stops rather than
//! hand out predictable bytes.

use lamina_core::device::Random;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The CSPRNG, seeded at first use.
static RNG: spin::Once<spin::Mutex<ChaCha20Rng>> = spin::Once::new();

/// A seed read from a device at boot, for a CPU without RDSEED/RDRAND, and
/// the device's name.
static DEVICE_SEED: spin::Once<([u8; 32], &'static str)> = spin::Once::new();

/// Keeps `seed`, read from the entropy device `device` (a name for the log,
/// such as `virtio-rng`), for a CPU without RDSEED/RDRAND; the first one
/// counts. Call it before the first random number is drawn.
pub fn seed_from_device(seed: [u8; 32], device: &'static str) {
    DEVICE_SEED.call_once(|| (seed, device));
}

/// Random bytes from a ChaCha20 CSPRNG, one per image, seeded by the CPU's
/// RDSEED/RDRAND or by [`seed_from_device`].
///
/// # Panics
/// At first use, when there is no seed: a CPU without RDSEED/RDRAND and no
/// entropy device.
#[derive(Clone, Copy, Default)]
pub struct ChaCha20Random;

impl Random for ChaCha20Random {
    fn fill(&self, buf: &mut [u8]) {
        let rng = RNG.call_once(|| {
            let seed = crate::entropy::hardware_seed().or_else(|| {
                let (seed, device) = DEVICE_SEED.get().copied()?;
                log::info!("random: no RDRAND: seeded from {device}");
                Some(seed)
            });
            match seed {
                Some(seed) => spin::Mutex::new(ChaCha20Rng::from_seed(seed)),
                None => panic!(
                    "no entropy (no RDRAND/RDSEED, no entropy device): refusing to produce predictable random numbers"
                ),
            }
        });
        rng.lock().fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_fill_every_byte() {
        if crate::entropy::hardware_seed().is_none() {
            seed_from_device([7; 32], "a test");
        }
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        ChaCha20Random.fill(&mut a);
        ChaCha20Random.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0; 64]);
    }
}
