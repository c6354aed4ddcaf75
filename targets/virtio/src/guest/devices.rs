//! The device traits on the virtio target: network interfaces, TCP/IP
//! stacks and block devices over the virtio drivers. The console, the clock
//! and random numbers are `lamina-metal`'s over [`VirtioMachine`] (the
//! serial port, the TSC and the CMOS clock; RDRAND or virtio-rng).

use super::boot::VirtioMachine;
use super::virtio::{Devices, VirtioBlock, VirtioNetif};
use lamina_core::device::*;
use lamina_core::platform::{DeviceError, Platform};
use lamina_core::runtime::Handle;
use lamina_metal::devices::{self as metal, MetalClock, MetalConsole, Stacks};
use lamina_net::{NetArgs, NetStack};

/// The serial console (COM1), polled.
pub type VirtioConsole = MetalConsole<VirtioMachine>;

/// Monotonic time from the calibrated TSC; wall time from the CMOS RTC at
/// the first call, advanced by the TSC.
pub type VirtioClock = MetalClock<VirtioMachine>;

/// Random bytes from a ChaCha20 CSPRNG seeded by RDSEED/RDRAND or, on a CPU
/// without them, by a virtio-rng device (read at boot). With neither, the
/// unikernel stops rather than hand out predictable bytes (`lamina run`
/// always attaches a virtio-rng device).
pub use lamina_metal::random::ChaCha20Random as VirtioRandom;

/// The devices of a virtio unikernel: those found at boot, by name.
pub struct GuestPlatform {
    devices: Devices,
    stacks: Stacks,
}

impl GuestPlatform {
    pub(crate) fn new(devices: Devices, runtime: Handle, net_args: NetArgs) -> Self {
        GuestPlatform {
            devices,
            stacks: Stacks::new(runtime, net_args),
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
    const TARGET: &'static str = <VirtioMachine as lamina_metal::Machine>::TARGET;

    fn console(&self) -> VirtioConsole {
        VirtioConsole::new()
    }

    fn clock(&self) -> VirtioClock {
        VirtioClock::new()
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
        self.stacks
            .get_or_start(name, || self.netif(name), VirtioClock::new())
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
        Err(metal::unsupported::<VirtioMachine>("key-value"))
    }

    /// The heap the boot code gave the allocator (the tender's memory less
    /// the image and the stack).
    fn heap_size(&self) -> Option<usize> {
        Some(lamina_metal::heap::size())
    }
}
