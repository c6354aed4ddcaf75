//! The device traits on the virtio target: console, clock and random from
//! the PC's legacy devices and the CPU; network interfaces, TCP/IP stacks
//! and block devices over the virtio drivers.

use super::hw;
use super::virtio::{Devices, VirtioBlock, VirtioNetif};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use lamina_core::device::*;
use lamina_core::platform::{DeviceError, Platform};
use lamina_core::runtime::{Handle, Instant};
use lamina_net::{NetArgs, NetStack};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const TARGET: &str = "virtio";

/// The serial console (COM1), polled.
#[derive(Clone, Default)]
pub struct VirtioConsole;

impl Console for VirtioConsole {
    fn write(&self, bytes: &[u8]) {
        hw::uart_write(bytes);
    }
}

/// Offset from monotonic to wall-clock time, from the CMOS RTC at first use.
static WALL_OFFSET: spin::Once<u64> = spin::Once::new();

/// Monotonic time from the calibrated TSC; wall time from the CMOS RTC at
/// the first call, advanced by the TSC.
#[derive(Clone, Default)]
pub struct VirtioClock;

impl Clock for VirtioClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(hw::monotonic_ns())
    }

    fn wall(&self) -> u64 {
        let offset = WALL_OFFSET.call_once(|| {
            (hw::rtc_unix_seconds() * 1_000_000_000).saturating_sub(hw::monotonic_ns())
        });
        offset.saturating_add(hw::monotonic_ns())
    }
}

/// ChaCha20 seeded from RDSEED/RDRAND (or a virtio-rng device) at first use.
static RNG: spin::Once<spin::Mutex<ChaCha20Rng>> = spin::Once::new();

/// A seed read from a virtio-rng device at boot, for a CPU without RDSEED/RDRAND.
static DEVICE_SEED: spin::Once<[u8; 32]> = spin::Once::new();

/// Keeps `seed`, read from a virtio-rng device, for the CSPRNG; the first
/// one counts.
pub(crate) fn seed_from_device(seed: [u8; 32]) {
    DEVICE_SEED.call_once(|| seed);
}

/// Random bytes from a ChaCha20 CSPRNG seeded by RDSEED/RDRAND or, on a CPU
/// without them, by a virtio-rng device (read at boot). With neither, the
/// unikernel stops rather than hand out predictable bytes (`lamina run`
/// always attaches a virtio-rng device).
#[derive(Clone, Default)]
pub struct VirtioRandom;

impl Random for VirtioRandom {
    fn fill(&self, buf: &mut [u8]) {
        let rng = RNG.call_once(|| {
            let seed = lamina_solo5::entropy::hardware_seed().or_else(|| {
                let seed = DEVICE_SEED.get().copied()?;
                log::info!("random: no RDRAND: seeded from virtio-rng");
                Some(seed)
            });
            match seed {
                Some(seed) => spin::Mutex::new(ChaCha20Rng::from_seed(seed)),
                None => panic!(
                    "no entropy (no RDRAND, no virtio-rng device): refusing to produce predictable random numbers"
                ),
            }
        });
        rng.lock().fill_bytes(buf);
    }
}

/// The devices of a virtio unikernel: those found at boot, by name.
pub struct GuestPlatform {
    devices: Devices,
    runtime: Handle,
    net_args: NetArgs,
    /// Stacks already brought up, by device name: asking twice shares one.
    stacks: RefCell<Vec<(String, NetStack)>>,
}

impl GuestPlatform {
    pub(crate) fn new(devices: Devices, runtime: Handle, net_args: NetArgs) -> Self {
        GuestPlatform {
            devices,
            runtime,
            net_args,
            stacks: RefCell::new(Vec::new()),
        }
    }
}

impl Platform for GuestPlatform {
    type Console = VirtioConsole;
    type Clock = VirtioClock;
    type Random = VirtioRandom;
    type Netif = VirtioNetif;
    type Stack = NetStack;
    type Block = VirtioBlock;
    type Kv = Unavailable;
    const TARGET: &'static str = TARGET;

    fn console(&self) -> VirtioConsole {
        VirtioConsole
    }

    fn clock(&self) -> VirtioClock {
        VirtioClock
    }

    fn random(&self) -> VirtioRandom {
        VirtioRandom
    }

    fn netif(&self, name: &str) -> Result<VirtioNetif, DeviceError> {
        let (_, device) = self
            .devices
            .net
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| DeviceError::NotAttached {
                kind: "net",
                name: name.into(),
            })?;
        Ok(VirtioNetif::new(device.clone()))
    }

    /// Lamina's TCP/IP stack over the network device `name`, configured by
    /// `--ipv4`/`--ipv4-gateway` or DHCP.
    fn stack(&self, name: &str) -> Result<NetStack, DeviceError> {
        if let Some((_, stack)) = self.stacks.borrow().iter().find(|(n, _)| n == name) {
            return Ok(stack.clone());
        }
        let netif = self.netif(name)?;
        let seed = VirtioRandom.next_u64();
        let stack = NetStack::start(
            netif,
            VirtioClock,
            seed,
            &self.runtime,
            self.net_args.clone(),
        );
        self.stacks
            .borrow_mut()
            .push((String::from(name), stack.clone()));
        Ok(stack)
    }

    fn block(&self, name: &str) -> Result<VirtioBlock, DeviceError> {
        let (_, device) = self
            .devices
            .block
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| DeviceError::NotAttached {
                kind: "block",
                name: name.into(),
            })?;
        Ok(VirtioBlock::new(device.clone()))
    }

    fn kv(&self, _name: &str) -> Result<Unavailable, DeviceError> {
        Err(DeviceError::Unsupported {
            kind: "key-value",
            target: TARGET,
        })
    }
}
