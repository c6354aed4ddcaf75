//! A virtio device's transport: the virtio-mmio register window or a
//! virtio-pci function. The drivers above (`net`, `blk`, `rng`) see only
//! [`Transport`]: the handshake, feature negotiation, queue set-up,
//! notifications, interrupts and configuration space, whichever bus the
//! device sits on.

use super::mmio::Mmio;
use super::pci::Pci;
use crate::virtqueue::Queue;

/// VIRTIO_F_VERSION_1: the device speaks virtio 1.x.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: the queues are live.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is done.
    pub const FEATURES_OK: u8 = 8;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Reads of the status while waiting for a reset to finish.
const RESET_SPINS: u32 = 1_000_000;

/// The registers the initialisation sequence (virtio 1.2, 3.1.1) uses, as
/// each transport lays them out.
pub trait Registers {
    /// The device status.
    fn status(&self) -> u8;
    /// Sets the device status (0 resets the device).
    fn set_status(&self, status: u8);
    /// Feature bits `32 * word ..` the device offers.
    fn device_features(&self, word: u32) -> u32;
    /// Feature bits `32 * word ..` the driver accepts.
    fn set_driver_features(&self, word: u32, bits: u32);
}

/// Resets the device and negotiates `wanted` features (VIRTIO_F_VERSION_1
/// is added and required); returns those accepted. A device that refuses
/// is marked FAILED.
pub fn negotiate(regs: &impl Registers, wanted: u64) -> Result<u64, SetupError> {
    use status::*;
    regs.set_status(0);
    let mut spins = 0u32;
    while regs.status() != 0 {
        spins += 1;
        if spins > RESET_SPINS {
            return Err(SetupError::Reset);
        }
        core::hint::spin_loop();
    }
    regs.set_status(ACKNOWLEDGE);
    regs.set_status(ACKNOWLEDGE | DRIVER);
    let offered = u64::from(regs.device_features(0)) | u64::from(regs.device_features(1)) << 32;
    let accepted = offered & (wanted | F_VERSION_1);
    if accepted & F_VERSION_1 == 0 {
        regs.set_status(FAILED);
        return Err(SetupError::Features);
    }
    regs.set_driver_features(0, accepted as u32);
    regs.set_driver_features(1, (accepted >> 32) as u32);
    regs.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    if regs.status() & FEATURES_OK == 0 {
        regs.set_status(FAILED);
        return Err(SetupError::Features);
    }
    Ok(accepted)
}

/// The size to give a queue: the largest power of two within the device's
/// maximum and the driver's `max_size`; `None` if that is below `min_size`.
pub fn queue_size(device_max: u16, max_size: u16, min_size: u16) -> Option<u16> {
    let limit = device_max.min(max_size);
    if limit == 0 {
        return None;
    }
    let size = 1u16 << (15 - limit.leading_zeros() as u16);
    (size >= min_size).then_some(size)
}

/// Device types (virtio 1.2, section 5).
pub mod device_type {
    /// virtio-net.
    pub const NET: u32 = 1;
    /// virtio-blk.
    pub const BLOCK: u32 = 2;
    /// virtio-rng, the entropy source.
    pub const ENTROPY: u32 = 4;
}

/// Why a device could not be brought up; the text is the message.
#[derive(Debug)]
pub enum SetupError {
    /// The window is no virtio-mmio device, or too small, or outside the
    /// guest's mapping.
    NotVirtio,
    /// A legacy (version 1) device: start QEMU with
    /// `-global virtio-mmio.force-legacy=false`.
    Legacy,
    /// The device did not finish its reset.
    Reset,
    /// The device refused the features, or lacks VIRTIO_F_VERSION_1.
    Features,
    /// The device has no such queue, or one too small.
    Queue,
    /// A virtio-pci function whose structures cannot be used: the text
    /// says which.
    Pci(&'static str),
    /// The device did not answer a request in time.
    Timeout,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SetupError::NotVirtio => "not a virtio-mmio device",
            SetupError::Legacy => {
                "a legacy virtio-mmio device (version 1): start QEMU with -global virtio-mmio.force-legacy=false"
            }
            SetupError::Reset => "the device does not finish its reset",
            SetupError::Features => "the device does not accept virtio 1.x features",
            SetupError::Queue => "the device's virtqueue is missing or too small",
            SetupError::Pci(why) => why,
            SetupError::Timeout => "the device does not answer",
        })
    }
}

/// How a device signals completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// An I/O APIC line (virtio-mmio): route it.
    Line(u32),
    /// MSI-X vector 0 of the function, for every queue: point it at the
    /// local APIC with [`Transport::route_msix`].
    MsiX,
    /// No interrupt the guest can take: poll the device.
    Polled,
}

/// A virtio device on its bus.
pub enum Transport {
    /// A virtio-mmio register window (microvm, Firecracker).
    Mmio(Mmio),
    /// A virtio-pci function (q35, pc).
    Pci(Pci),
}

impl Transport {
    /// Resets the device, negotiates `wanted` features (VIRTIO_F_VERSION_1
    /// is added and required) and returns those accepted.
    pub fn begin(&self, wanted: u64) -> Result<u64, SetupError> {
        match self {
            Transport::Mmio(t) => t.begin(wanted),
            Transport::Pci(t) => t.begin(wanted),
        }
    }

    /// Sets up queue `index` with at most `max_size` entries (a power of
    /// two) and at least `min_size`, and enables it.
    pub fn queue(&self, index: u16, max_size: u16, min_size: u16) -> Result<Queue, SetupError> {
        match self {
            Transport::Mmio(t) => t.queue(index, max_size, min_size),
            Transport::Pci(t) => t.queue(index, max_size, min_size),
        }
    }

    /// Tells the device the driver is ready: the queues are live.
    pub fn finish(&self) {
        match self {
            Transport::Mmio(t) => t.finish(),
            Transport::Pci(t) => t.finish(),
        }
    }

    /// Tells the device that queue `index` has new buffers.
    pub fn notify(&self, index: u16) {
        match self {
            Transport::Mmio(t) => t.notify(index),
            Transport::Pci(t) => t.notify(index),
        }
    }

    /// Acknowledges pending interrupts, so that the next one is raised
    /// again (the I/O APIC entry is edge-triggered; MSI-X needs nothing).
    pub fn ack_interrupt(&self) {
        match self {
            Transport::Mmio(t) => t.ack_interrupt(),
            Transport::Pci(t) => t.ack_interrupt(),
        }
    }

    /// Reads `N` bytes of device-specific configuration at `offset`,
    /// consistently; bytes past the device's configuration read as zero.
    pub fn config<const N: usize>(&self, offset: usize) -> [u8; N] {
        match self {
            Transport::Mmio(t) => t.config::<N>(offset),
            Transport::Pci(t) => t.config::<N>(offset),
        }
    }

    /// How the device interrupts.
    pub fn interrupt(&self) -> Interrupt {
        match self {
            Transport::Mmio(t) => Interrupt::Line(t.irq),
            Transport::Pci(t) => t.interrupt(),
        }
    }

    /// Points the device's MSI-X vector at `address` with `data` and
    /// unmasks it; false if the device has no usable MSI-X.
    pub fn route_msix(&self, address: u64, data: u32) -> bool {
        match self {
            Transport::Mmio(_) => false,
            Transport::Pci(t) => t.route_msix(address, data),
        }
    }
}
