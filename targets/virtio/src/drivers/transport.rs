//! A virtio device's transport: the virtio-mmio register window or a
//! virtio-pci function. The drivers above (`net`, `blk`, `rng`) see only
//! [`Transport`]: the handshake, feature negotiation, queue set-up,
//! notifications, interrupts and configuration space, whichever bus the
//! device sits on.

use super::mmio::Mmio;
use super::pci::Pci;
use super::Bus;
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
    /// The device hit an error it cannot recover from without a reset
    /// (set by the device).
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Longest wait for a reset to finish. QEMU's and Firecracker's devices
/// reset at once; a status read may cost a VM exit, so this is a time,
/// not a number of reads.
const RESET_TIMEOUT_NS: u64 = 100_000_000;

/// How long a request waits on a device that returns nothing before the
/// driver looks at the device's status (a register read: a VM exit), and
/// at most how often it looks again. A device that reset itself or needs
/// a reset completes nothing ever again: this bounds the wait before the
/// driver notices.
pub const STALL_NS: u64 = 1_000_000_000;

/// A device that stopped working on its own after DRIVER_OK: the text is
/// the message, naming what the status register said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLost {
    /// The status read.
    pub status: u8,
}

impl core::fmt::Display for DeviceLost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use status::*;
        let status = self.status;
        if status == 0 {
            write!(f, "the device reset itself (status 0): its queues are gone")
        } else if status & DEVICE_NEEDS_RESET != 0 {
            write!(
                f,
                "the device needs a reset (status {status:#x}, DEVICE_NEEDS_RESET set): it stopped serving its queues"
            )
        } else {
            write!(
                f,
                "the device dropped DRIVER_OK (status {status:#x}): it stopped serving its queues"
            )
        }
    }
}

/// When a driver waiting on a device looks at its status: after
/// [`STALL_NS`] without progress, then at most once per `STALL_NS`.
pub struct Watchdog {
    /// The last progress or look, in the bus's nanoseconds.
    since: core::cell::Cell<u64>,
}

impl Watchdog {
    /// A watchdog whose wait starts at `now`.
    pub fn new(now: u64) -> Watchdog {
        Watchdog {
            since: core::cell::Cell::new(now),
        }
    }

    /// The device made progress (or a new wait starts) at `now`.
    pub fn progress(&self, now: u64) {
        self.since.set(now);
    }

    /// Whether the device's status is to be looked at `now`; if so, the
    /// next look is `STALL_NS` later.
    pub fn due(&self, now: u64) -> bool {
        let due = now.saturating_sub(self.since.get()) >= STALL_NS;
        if due {
            self.since.set(now);
        }
        due
    }
}

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
pub fn negotiate(regs: &impl Registers, wanted: u64, bus: &impl Bus) -> Result<u64, SetupError> {
    use status::*;
    regs.set_status(0);
    let start = bus.now_ns();
    loop {
        let status = regs.status();
        if status == 0 {
            break;
        }
        if bus.now_ns().saturating_sub(start) > RESET_TIMEOUT_NS {
            return Err(SetupError::Reset { status });
        }
        core::hint::spin_loop();
    }
    regs.set_status(ACKNOWLEDGE);
    regs.set_status(ACKNOWLEDGE | DRIVER);
    let offered = u64::from(regs.device_features(0)) | u64::from(regs.device_features(1)) << 32;
    let accepted = offered & (wanted | F_VERSION_1);
    if accepted & F_VERSION_1 == 0 {
        regs.set_status(FAILED);
        return Err(SetupError::NoVersion1 { offered });
    }
    regs.set_driver_features(0, accepted as u32);
    regs.set_driver_features(1, (accepted >> 32) as u32);
    regs.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    let status = regs.status();
    if status & FEATURES_OK == 0 {
        regs.set_status(FAILED);
        return Err(SetupError::FeaturesRefused { accepted, status });
    }
    Ok(accepted)
}

/// The size to give queue `queue`: the largest power of two within the
/// device's maximum and the driver's `max_size`, at least `min_size`.
pub fn queue_size(
    queue: u16,
    device_max: u32,
    max_size: u16,
    min_size: u16,
) -> Result<u16, SetupError> {
    let limit = device_max.min(u32::from(max_size)) as u16;
    let size = match limit {
        0 => 0,
        _ => 1u16 << (15 - limit.leading_zeros() as u16),
    };
    if size == 0 || size < min_size {
        return Err(SetupError::QueueSize {
            queue,
            device_max,
            min_size,
        });
    }
    Ok(size)
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

/// Why a device could not be brought up; the text is the message, which
/// names the value the device gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The registers lie outside the guest's memory map, or the
    /// virtio-mmio window is too small or misaligned.
    Unmapped {
        /// Where the registers are.
        address: u64,
        /// How many bytes.
        len: u64,
    },
    /// The window's magic value is not "virt": no virtio-mmio device.
    NotVirtio {
        /// The magic value read.
        magic: u32,
    },
    /// A legacy (version 1) device: start QEMU with
    /// `-global virtio-mmio.force-legacy=false`.
    Legacy,
    /// A virtio-mmio version other than 1 and 2.
    Version {
        /// The version read.
        version: u32,
    },
    /// The device did not finish its reset.
    Reset {
        /// The status it kept.
        status: u8,
    },
    /// The device lacks VIRTIO_F_VERSION_1.
    NoVersion1 {
        /// The features it offers.
        offered: u64,
    },
    /// The device did not keep FEATURES_OK.
    FeaturesRefused {
        /// The features the driver accepted.
        accepted: u64,
        /// The status read back.
        status: u8,
    },
    /// The device has fewer queues than the driver needs.
    QueueMissing {
        /// The queue the driver needs.
        queue: u16,
        /// The device's `num_queues`.
        count: u16,
    },
    /// A queue was enabled before the driver set it up.
    QueueEnabled {
        /// The queue.
        queue: u16,
    },
    /// A queue's largest size leaves too few entries.
    QueueSize {
        /// The queue.
        queue: u16,
        /// The device's largest size for it.
        device_max: u32,
        /// The fewest entries the driver works with.
        min_size: u16,
    },
    /// A queue's notification address lies outside the notification
    /// structure or is misaligned.
    NotifyOffset {
        /// The queue.
        queue: u16,
        /// Its `queue_notify_off`.
        offset: u16,
        /// The structure's `notify_off_multiplier`.
        multiplier: u32,
        /// The structure's length.
        length: u32,
    },
    /// A virtio-blk capacity whose bytes do not fit in 64 bits.
    Capacity {
        /// The capacity in 512-byte sectors.
        sectors: u64,
    },
    /// A virtio-pci structure is not aligned as its registers need.
    Misaligned {
        /// Which structure.
        what: &'static str,
        /// Its address.
        address: u64,
    },
    /// A virtio-pci function whose structures cannot be used: the text
    /// says which.
    Pci(&'static str),
    /// The device did not answer a request in time.
    Timeout,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SetupError::Unmapped { address, len } => write!(
                f,
                "its registers ({len:#x} bytes at {address:#x}) are not a window the guest maps"
            ),
            SetupError::NotVirtio { magic } => write!(
                f,
                "not a virtio-mmio device (magic value {magic:#x}, not 0x74726976)"
            ),
            SetupError::Legacy => f.write_str(
                "a legacy virtio-mmio device (version 1): start QEMU with -global virtio-mmio.force-legacy=false",
            ),
            SetupError::Version { version } => {
                write!(f, "virtio-mmio version {version}, not 2")
            }
            SetupError::Reset { status } => write!(
                f,
                "the device does not finish its reset (status {status:#x}, not 0)"
            ),
            SetupError::NoVersion1 { offered } => write!(
                f,
                "the device does not offer VIRTIO_F_VERSION_1 (features {offered:#x}): not a virtio 1.x device"
            ),
            SetupError::FeaturesRefused { accepted, status } => write!(
                f,
                "the device refuses features {accepted:#x} (status {status:#x} without FEATURES_OK)"
            ),
            SetupError::QueueMissing { queue, count } => write!(
                f,
                "the device has {count} queues (num_queues), the driver needs queue {queue}"
            ),
            SetupError::QueueEnabled { queue } => {
                write!(f, "queue {queue} is enabled before the driver set it up")
            }
            SetupError::QueueSize {
                queue,
                device_max,
                min_size,
            } => write!(
                f,
                "queue {queue} has at most {device_max} entries (its maximum size), the driver needs {min_size}"
            ),
            SetupError::NotifyOffset {
                queue,
                offset,
                multiplier,
                length,
            } => write!(
                f,
                "queue {queue}'s notification address (queue_notify_off {offset} times notify_off_multiplier {multiplier}) is misaligned or outside the notification structure ({length} bytes)"
            ),
            SetupError::Capacity { sectors } => write!(
                f,
                "the device's capacity of {sectors} sectors is more than 2^64 bytes"
            ),
            SetupError::Misaligned { what, address } => {
                write!(f, "its {what} at {address:#x} is misaligned")
            }
            SetupError::Pci(why) => f.write_str(why),
            SetupError::Timeout => f.write_str("the device does not answer"),
        }
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
pub enum Transport<B: Bus> {
    /// A virtio-mmio register window (microvm, Firecracker).
    Mmio(Mmio<B>),
    /// A virtio-pci function (q35, pc).
    Pci(Pci<B>),
}

impl<B: Bus> Transport<B> {
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

    /// Checks the device still runs: its status has DRIVER_OK and neither
    /// DEVICE_NEEDS_RESET nor FAILED (a device that reset itself reads 0).
    pub fn check_running(&self) -> Result<(), DeviceLost> {
        use status::*;
        let status = match self {
            Transport::Mmio(t) => t.status(),
            Transport::Pci(t) => t.status(),
        };
        if status & (DRIVER_OK | DEVICE_NEEDS_RESET | FAILED) == DRIVER_OK {
            Ok(())
        } else {
            Err(DeviceLost { status })
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

    /// The bus's monotonic time in nanoseconds, for the drivers' timeouts.
    pub fn now_ns(&self) -> u64 {
        match self {
            Transport::Mmio(t) => t.bus.now_ns(),
            Transport::Pci(t) => t.bus.now_ns(),
        }
    }
}
