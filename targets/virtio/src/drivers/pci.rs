//! The virtio-pci transport, modern (virtio 1.2, section 4.1): a
//! function's common configuration, notification, ISR and
//! device-specific structures in its memory BARs, and its MSI-X table.
//!
//! What configuration space says is parsed and checked by [`crate::pci`];
//! the BARs are where the firmware (SeaBIOS, under QEMU's q35 and pc) put
//! them, and are used only if they lie inside the guest's identity mapping
//! and the structures are aligned as their registers need.
//!
//! Interrupts: MSI-X vector 0, for every queue, is sent straight to the
//! local APIC (no INTx, no I/O APIC routing); a function without MSI-X is
//! polled.

use super::transport::status::*;
use super::transport::{negotiate, queue_size, Interrupt, Registers, SetupError};
use super::{Bus, RegisterWindow};
use crate::pci::{self as cfg, Msix, COMMON_CFG_LEN};
use crate::virtqueue::Queue;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

// `struct virtio_pci_common_cfg`.
const DEVICE_FEATURE_SELECT: usize = 0x00;
const DEVICE_FEATURE: usize = 0x04;
const DRIVER_FEATURE_SELECT: usize = 0x08;
const DRIVER_FEATURE: usize = 0x0c;
const CONFIG_MSIX_VECTOR: usize = 0x10;
const NUM_QUEUES: usize = 0x12;
const DEVICE_STATUS: usize = 0x14;
const CONFIG_GENERATION: usize = 0x15;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_SIZE: usize = 0x18;
const QUEUE_MSIX_VECTOR: usize = 0x1a;
const QUEUE_ENABLE: usize = 0x1c;
const QUEUE_NOTIFY_OFF: usize = 0x1e;
const QUEUE_DESC: usize = 0x20;
const QUEUE_DRIVER: usize = 0x28;
const QUEUE_DEVICE: usize = 0x30;

/// "No MSI-X vector".
const NO_VECTOR: u16 = 0xffff;

/// A virtio-pci function, its structures mapped.
pub struct Pci<B: Bus> {
    pub(super) bus: B,
    function: B::Function,
    /// The common configuration structure: at least COMMON_CFG_LEN bytes,
    /// aligned to 4.
    common: B::Window,
    /// The notification structure, its address, length and multiplier.
    notify: B::Window,
    notify_address: u64,
    notify_len: u32,
    notify_multiplier: u32,
    isr: Option<B::Window>,
    /// The device-specific structure, its length, and whether it is
    /// aligned to 4 (then read in dwords where it can be).
    device: Option<(B::Window, u32, bool)>,
    /// The MSI-X capability and its table (`entries` * 16 bytes).
    msix: Option<(Msix, B::Window)>,
    /// Some queue refused MSI-X vector 0.
    vector_refused: Cell<bool>,
    /// Each queue's notification offset in the notification structure.
    notify_at: RefCell<Vec<(u16, usize)>>,
}

impl<B: Bus> Pci<B> {
    /// Finds the function's structures inside its BARs, inside the first
    /// `mapped` bytes, and turns on memory decoding and bus mastering.
    pub fn probe(bus: B, function: B::Function, mapped: u64) -> Result<Pci<B>, SetupError> {
        let caps = cfg::capabilities(&function);
        let bars = cfg::memory_bars(&function);
        let map = |address: u64, len: u32, what: &'static str, align: u64| {
            if !address.is_multiple_of(align) {
                return Err(SetupError::Misaligned { what, address });
            }
            bus.window(address, u64::from(len))
                .ok_or(SetupError::Unmapped {
                    address,
                    len: u64::from(len),
                })
        };
        let common_region = caps.common.ok_or(SetupError::Pci(
            "no common configuration structure (a legacy-only device? use disable-legacy=on or a modern device)",
        ))?;
        let common_address =
            common_region
                .address(&bars, COMMON_CFG_LEN, mapped)
                .ok_or(SetupError::Pci(
                    "no common configuration structure in a BAR the guest maps",
                ))?;
        let common = map(common_address, COMMON_CFG_LEN, "common configuration", 4)?;
        let (notify_region, notify_multiplier) = caps
            .notify
            .ok_or(SetupError::Pci("no notification structure"))?;
        let notify_address = notify_region
            .address(&bars, 2, mapped)
            .ok_or(SetupError::Pci("no notification structure in a mapped BAR"))?;
        let notify = map(
            notify_address,
            notify_region.length,
            "notification structure",
            1,
        )?;
        let isr = match caps.isr.and_then(|r| r.address(&bars, 1, mapped)) {
            Some(address) => Some(map(address, 1, "ISR", 1)?),
            None => None,
        };
        let device = match caps.device {
            Some(region) => match region.address(&bars, 0, mapped) {
                Some(address) => Some((
                    map(address, region.length, "device configuration", 1)?,
                    region.length,
                    address.is_multiple_of(4),
                )),
                None => None,
            },
            None => None,
        };
        let msix = match caps.msix {
            Some(m) => match m.table.address(&bars, m.table.length, mapped) {
                Some(address) => Some((m, map(address, m.table.length, "MSI-X table", 4)?)),
                None => None,
            },
            None => None,
        };
        let mut command = cfg::command(&function) | cfg::COMMAND_MEMORY | cfg::COMMAND_BUS_MASTER;
        if let Some((m, _)) = &msix {
            // Every entry starts masked; vector 0 is unmasked once it points
            // at the local APIC (`route_msix`).
            cfg::set_msix_control(&function, m, cfg::MSIX_ENABLE);
            command |= cfg::COMMAND_INTX_DISABLE;
        }
        cfg::set_command(&function, command);
        Ok(Pci {
            bus,
            function,
            common,
            notify,
            notify_address,
            notify_len: notify_region.length,
            notify_multiplier,
            isr,
            device,
            msix,
            vector_refused: Cell::new(false),
            notify_at: RefCell::new(Vec::new()),
        })
    }

    fn fail(&self) {
        self.common.write8(DEVICE_STATUS, FAILED);
    }

    /// Resets the device, negotiates `wanted` features (VIRTIO_F_VERSION_1
    /// is added and required) and returns those accepted.
    pub fn begin(&self, wanted: u64) -> Result<u64, SetupError> {
        let accepted = negotiate(self, wanted, &self.bus)?;
        // Configuration changes interrupt nobody.
        self.common.write16(CONFIG_MSIX_VECTOR, NO_VECTOR);
        Ok(accepted)
    }

    /// Sets up queue `index` with at most `max_size` entries (a power of
    /// two) and at least `min_size`, on MSI-X vector 0, and enables it.
    pub fn queue(&self, index: u16, max_size: u16, min_size: u16) -> Result<Queue, SetupError> {
        let common = &self.common;
        let count = common.read16(NUM_QUEUES);
        if index >= count {
            self.fail();
            return Err(SetupError::QueueMissing {
                queue: index,
                count,
            });
        }
        common.write16(QUEUE_SELECT, index);
        if common.read16(QUEUE_ENABLE) != 0 {
            return Err(SetupError::QueueEnabled { queue: index });
        }
        let device_max = u32::from(common.read16(QUEUE_SIZE));
        let size = match queue_size(index, device_max, max_size, min_size) {
            Ok(size) => size,
            Err(e) => {
                self.fail();
                return Err(e);
            }
        };
        // Where to notify: a 16-bit register inside the notification
        // structure, or not at all.
        let notify_off = common.read16(QUEUE_NOTIFY_OFF);
        let offset = u64::from(notify_off) * u64::from(self.notify_multiplier);
        if offset + 2 > u64::from(self.notify_len)
            || !(self.notify_address + offset).is_multiple_of(2)
        {
            self.fail();
            return Err(SetupError::NotifyOffset {
                queue: index,
                offset: notify_off,
                multiplier: self.notify_multiplier,
                length: self.notify_len,
            });
        }
        let queue = Queue::new(size, index);
        let (desc, driver, device) = queue.addresses();
        common.write16(QUEUE_SIZE, size);
        if self.msix.is_some() {
            common.write16(QUEUE_MSIX_VECTOR, 0);
            if common.read16(QUEUE_MSIX_VECTOR) != 0 {
                self.vector_refused.set(true);
            }
        }
        for (register, address) in [
            (QUEUE_DESC, desc),
            (QUEUE_DRIVER, driver),
            (QUEUE_DEVICE, device),
        ] {
            common.write32(register, address as u32);
            common.write32(register + 4, (address >> 32) as u32);
        }
        self.notify_at.borrow_mut().push((index, offset as usize));
        common.write16(QUEUE_ENABLE, 1);
        Ok(queue)
    }

    /// Tells the device the driver is ready: the queues are live.
    pub fn finish(&self) {
        self.common.write8(
            DEVICE_STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
    }

    /// Tells the device that queue `index` has new buffers.
    pub fn notify(&self, index: u16) {
        let at = self
            .notify_at
            .borrow()
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, a)| *a);
        if let Some(at) = at {
            self.notify.write16(at, index);
        }
    }

    /// Without MSI-X, reads (and so clears) the ISR status; with it, there
    /// is nothing to acknowledge.
    pub fn ack_interrupt(&self) {
        if self.interrupt() == Interrupt::MsiX {
            return;
        }
        if let Some(isr) = &self.isr {
            isr.read8(0);
        }
    }

    /// Reads `N` bytes of device-specific configuration at `offset`, in
    /// dwords where aligned, else bytes; retried while the generation
    /// changes (a bounded number of times). Bytes past the structure read
    /// as zero.
    pub fn config<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut bytes = [0u8; N];
        let Some((window, len, aligned)) = &self.device else {
            return bytes;
        };
        let len = *len as usize;
        for _ in 0..64 {
            let before = self.common.read8(CONFIG_GENERATION);
            let mut i = 0;
            while i < N {
                let at = offset.saturating_add(i);
                if *aligned && at.is_multiple_of(4) && i + 4 <= N && at.saturating_add(4) <= len {
                    let word = window.read32(at);
                    bytes[i..i + 4].copy_from_slice(&word.to_le_bytes());
                    i += 4;
                } else {
                    if at < len {
                        bytes[i] = window.read8(at);
                    }
                    i += 1;
                }
            }
            if self.common.read8(CONFIG_GENERATION) == before {
                break;
            }
        }
        bytes
    }

    /// MSI-X when the function has it and every queue took vector 0;
    /// polled otherwise.
    pub fn interrupt(&self) -> Interrupt {
        if self.msix.is_some() && !self.vector_refused.get() {
            Interrupt::MsiX
        } else {
            Interrupt::Polled
        }
    }

    /// Writes MSI-X table entry 0 (`address`, `data`) and unmasks it.
    pub fn route_msix(&self, address: u64, data: u32) -> bool {
        let Some((msix, table)) = &self.msix else {
            return false;
        };
        if self.vector_refused.get() {
            return false;
        }
        table.write32(0, address as u32);
        table.write32(4, (address >> 32) as u32);
        table.write32(8, data);
        table.write32(12, 0); // unmasked
        let control = cfg::msix_control(&self.function, msix);
        control & cfg::MSIX_ENABLE != 0 && control & cfg::MSIX_FUNCTION_MASK == 0
    }
}

impl<B: Bus> Registers for Pci<B> {
    fn status(&self) -> u8 {
        self.common.read8(DEVICE_STATUS)
    }

    fn set_status(&self, status: u8) {
        self.common.write8(DEVICE_STATUS, status);
    }

    fn device_features(&self, word: u32) -> u32 {
        self.common.write32(DEVICE_FEATURE_SELECT, word);
        self.common.read32(DEVICE_FEATURE)
    }

    fn set_driver_features(&self, word: u32, bits: u32) {
        self.common.write32(DRIVER_FEATURE_SELECT, word);
        self.common.write32(DRIVER_FEATURE, bits);
    }
}
