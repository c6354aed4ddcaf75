//! virtio-rng (virtio 1.2, section 5.4): one request queue; the driver
//! offers a buffer, the device fills it with entropy. Used once, at boot,
//! to seed the CSPRNG when the CPU has no RDRAND.

use super::transport::{SetupError, Transport};
use super::Bus;
use crate::virtqueue::{Dma, DESC_WRITE};

/// Longest wait for the device to fill the seed.
const TIMEOUT_NS: u64 = 1_000_000_000;

/// Brings the device up and reads 32 bytes of entropy from it, polling
/// (the device may return fewer bytes than asked: it is asked again).
pub fn seed<B: Bus>(transport: &Transport<B>) -> Result<[u8; 32], SetupError> {
    transport.begin(0)?;
    let queue = transport.queue(0, 1, 1)?;
    transport.finish();
    let buffer = Dma::new(32);
    let mut filled = 0usize;
    let start = transport.now_ns();
    while filled < 32 {
        queue.set_descriptor(
            0,
            buffer.address(filled),
            (32 - filled) as u32,
            DESC_WRITE,
            0,
        );
        queue.push(0);
        if queue.publish() {
            transport.notify(queue.index);
        }
        let len = loop {
            if let Some((_, len)) = queue.pop_used() {
                break len as usize;
            }
            if queue.is_broken() || transport.now_ns().saturating_sub(start) > TIMEOUT_NS {
                return Err(SetupError::Timeout);
            }
            core::hint::spin_loop();
        };
        filled += len.min(32 - filled);
    }
    let mut seed = [0u8; 32];
    buffer.read(0, &mut seed);
    transport.ack_interrupt();
    Ok(seed)
}
