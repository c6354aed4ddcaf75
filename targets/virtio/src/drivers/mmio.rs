//! The virtio-mmio transport, version 2 (virtio 1.x, "modern"): the
//! register window, the status handshake, feature negotiation and queue
//! set-up (virtio 1.2, section 4.2.2).

use super::transport::status::*;
use super::transport::{negotiate, queue_size, Registers, SetupError};
use super::{Bus, RegisterWindow};
use crate::cmdline::MmioDevice;
use crate::virtqueue::Queue;

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;

// Register offsets.
const MAGIC_VALUE: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const QUEUE_DESC: usize = 0x080;
const QUEUE_DRIVER: usize = 0x090;
const QUEUE_DEVICE: usize = 0x0a0;
const CONFIG_GENERATION: usize = 0x0fc;
/// Start of the device-specific configuration space.
const CONFIG: usize = 0x100;
/// The window must hold the registers and this much configuration space.
const MIN_WINDOW: u64 = 0x200;

/// A virtio-mmio device's register window.
pub struct Mmio<B: Bus> {
    pub(super) bus: B,
    window: B::Window,
    /// The interrupt line announced on the command line.
    pub irq: u32,
}

impl<B: Bus> Mmio<B> {
    /// Checks the window the command line announced and reads its device
    /// type (0: an empty slot).
    pub fn probe(bus: B, device: &MmioDevice) -> Result<(Mmio<B>, u32), SetupError> {
        let unmapped = SetupError::Unmapped {
            address: device.base,
            len: device.size,
        };
        if device.size < MIN_WINDOW || !device.base.is_multiple_of(4) {
            return Err(unmapped);
        }
        let window = bus.window(device.base, device.size).ok_or(unmapped)?;
        let transport = Mmio {
            bus,
            window,
            irq: device.irq,
        };
        let magic = transport.read(MAGIC_VALUE);
        if magic != MAGIC {
            return Err(SetupError::NotVirtio { magic });
        }
        match transport.read(VERSION) {
            2 => {}
            1 => return Err(SetupError::Legacy),
            version => return Err(SetupError::Version { version }),
        }
        let id = transport.read(DEVICE_ID);
        Ok((transport, id))
    }

    fn read(&self, offset: usize) -> u32 {
        self.window.read32(offset)
    }

    fn write(&self, offset: usize, value: u32) {
        self.window.write32(offset, value)
    }

    /// Resets the device, negotiates `wanted` features (VIRTIO_F_VERSION_1
    /// is added and required) and returns those accepted.
    pub fn begin(&self, wanted: u64) -> Result<u64, SetupError> {
        negotiate(self, wanted, &self.bus)
    }

    /// Sets up queue `index` with at most `max_size` entries (a power of
    /// two) and at least `min_size`, and enables it.
    pub fn queue(&self, index: u16, max_size: u16, min_size: u16) -> Result<Queue, SetupError> {
        self.write(QUEUE_SEL, index as u32);
        if self.read(QUEUE_READY) != 0 {
            return Err(SetupError::QueueEnabled { queue: index });
        }
        let size = match queue_size(index, self.read(QUEUE_NUM_MAX), max_size, min_size) {
            Ok(size) => size,
            Err(e) => {
                self.fail();
                return Err(e);
            }
        };
        let queue = Queue::new(size, index);
        let (desc, driver, device) = queue.addresses();
        self.write(QUEUE_NUM, size as u32);
        for (register, address) in [
            (QUEUE_DESC, desc),
            (QUEUE_DRIVER, driver),
            (QUEUE_DEVICE, device),
        ] {
            self.write(register, address as u32);
            self.write(register + 4, (address >> 32) as u32);
        }
        self.write(QUEUE_READY, 1);
        Ok(queue)
    }

    /// Tells the device the driver is ready: the queues are live.
    pub fn finish(&self) {
        self.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    fn fail(&self) {
        self.set_status(FAILED);
    }

    /// Tells the device that queue `index` has new buffers.
    pub fn notify(&self, index: u16) {
        self.write(QUEUE_NOTIFY, index as u32);
    }

    /// Acknowledges pending interrupts, so that the next one raises the line
    /// again (the I/O APIC entry is edge-triggered).
    pub fn ack_interrupt(&self) {
        let pending = self.read(INTERRUPT_STATUS);
        if pending != 0 {
            self.write(INTERRUPT_ACK, pending);
        }
    }

    /// Reads `N` bytes of configuration space at `offset`, consistently
    /// (retried while the configuration generation changes, a bounded
    /// number of times). Offsets past the window read as zero.
    pub fn config<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut bytes = [0u8; N];
        for _ in 0..64 {
            let before = self.read(CONFIG_GENERATION);
            for (i, byte) in bytes.iter_mut().enumerate() {
                let at = CONFIG.saturating_add(offset).saturating_add(i);
                if at >= MIN_WINDOW as usize {
                    break;
                }
                // Byte-wide reads of configuration space are allowed for
                // virtio-mmio.
                *byte = self.window.read8(at);
            }
            if self.read(CONFIG_GENERATION) == before {
                break;
            }
        }
        bytes
    }
}

impl<B: Bus> Registers for Mmio<B> {
    fn status(&self) -> u8 {
        self.read(STATUS) as u8
    }

    fn set_status(&self, status: u8) {
        self.write(STATUS, u32::from(status));
    }

    fn device_features(&self, word: u32) -> u32 {
        self.write(DEVICE_FEATURES_SEL, word);
        self.read(DEVICE_FEATURES)
    }

    fn set_driver_features(&self, word: u32, bits: u32) {
        self.write(DRIVER_FEATURES_SEL, word);
        self.write(DRIVER_FEATURES, bits);
    }
}
