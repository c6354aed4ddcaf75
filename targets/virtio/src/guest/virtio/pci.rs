//! The virtio-pci transport, modern (virtio 1.2, section 4.1): PCI
//! configuration space through the legacy 0xCF8/0xCFC ports, the bus walk
//! that finds virtio functions, and a function's common configuration,
//! notification, ISR and device-specific structures in its memory BARs.
//!
//! What configuration space says is parsed and checked by [`crate::pci`];
//! the BARs are where the firmware (SeaBIOS, under QEMU's q35 and pc) put
//! them, and are used only if they lie inside the guest's identity mapping.
//!
//! Interrupts: MSI-X vector 0, for every queue, is sent straight to the
//! local APIC (no INTx, no I/O APIC routing); a function without MSI-X is
//! polled.

use super::transport::status::*;
use super::transport::{negotiate, queue_size, Interrupt, Registers, SetupError};
use crate::guest::hw;
use crate::pci::{self as cfg, ConfigSpace, Msix, COMMON_CFG_LEN};
use crate::virtqueue::Queue;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ptr::{read_volatile, write_volatile};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

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

/// A PCI function, by its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    bus: u8,
    device: u8,
    function: u8,
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "PCI {:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}

impl ConfigSpace for Function {
    fn read32(&self, offset: u8) -> u32 {
        hw::outl(CONFIG_ADDRESS, self.address(offset));
        hw::inl(CONFIG_DATA)
    }

    fn write32(&self, offset: u8, value: u32) {
        hw::outl(CONFIG_ADDRESS, self.address(offset));
        hw::outl(CONFIG_DATA, value);
    }
}

impl Function {
    /// The configuration mechanism #1 address of dword `offset`.
    fn address(&self, offset: u8) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | ((self.device & 0x1f) as u32) << 11
            | ((self.function & 7) as u32) << 8
            | (offset & 0xfc) as u32
    }
}

/// Every virtio function on bus 0 and the buses behind its bridges, with
/// its device type, in bus, device and function order. Nothing when bus 0
/// has no host bridge (microvm, Firecracker: no PCI at all).
pub fn scan() -> Vec<(Function, u32)> {
    let mut found = Vec::new();
    let host = Function {
        bus: 0,
        device: 0,
        function: 0,
    };
    if cfg::ids(&host).is_none() {
        return found;
    }
    let mut seen = [false; 256];
    let mut buses = Vec::from([0u8]);
    seen[0] = true;
    let mut next = 0;
    while let Some(&bus) = buses.get(next) {
        next += 1;
        for device in 0..32 {
            let first = Function {
                bus,
                device,
                function: 0,
            };
            if cfg::ids(&first).is_none() {
                continue;
            }
            let functions = if cfg::header_type(&first).1 { 8 } else { 1 };
            for function in 0..functions {
                let f = Function {
                    bus,
                    device,
                    function,
                };
                if cfg::ids(&f).is_none() {
                    continue;
                }
                match cfg::header_type(&f).0 {
                    0 => {
                        if let Some(kind) = cfg::virtio_type(&f) {
                            found.push((f, kind));
                        }
                    }
                    1 => {
                        // A PCI-to-PCI bridge: walk its secondary bus too.
                        let secondary = f.read8(cfg::SECONDARY_BUS);
                        if secondary != 0 && !seen[secondary as usize] {
                            seen[secondary as usize] = true;
                            buses.push(secondary);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    found
}

/// A virtio-pci function, its structures mapped.
pub struct Pci {
    function: Function,
    common: usize,
    notify: usize,
    notify_len: u32,
    notify_multiplier: u32,
    isr: Option<usize>,
    device: usize,
    device_len: u32,
    /// The MSI-X capability and the address of its table.
    msix: Option<(Msix, usize)>,
    /// Some queue refused MSI-X vector 0.
    vector_refused: Cell<bool>,
    /// Each queue's notification address.
    notify_at: RefCell<Vec<(u16, usize)>>,
}

impl Pci {
    /// Finds the function's structures inside its BARs, inside the first
    /// `mapped` bytes, and turns on memory decoding and bus mastering.
    pub fn probe(function: Function, mapped: u64) -> Result<Pci, SetupError> {
        let caps = cfg::capabilities(&function);
        let bars = cfg::memory_bars(&function);
        let common = caps
            .common
            .and_then(|r| r.address(&bars, COMMON_CFG_LEN, mapped))
            .ok_or(SetupError::Pci(
                "no common configuration structure in a BAR the guest maps (a legacy-only device? use disable-legacy=on or a modern device)",
            ))?;
        let (notify_region, notify_multiplier) = caps
            .notify
            .ok_or(SetupError::Pci("no notification structure"))?;
        let notify = notify_region
            .address(&bars, 2, mapped)
            .ok_or(SetupError::Pci("no notification structure in a mapped BAR"))?;
        let isr = caps.isr.and_then(|r| r.address(&bars, 1, mapped));
        let (device, device_len) = caps
            .device
            .and_then(|r| Some((r.address(&bars, 0, mapped)?, r.length)))
            .unwrap_or((0, 0));
        let msix = caps.msix.and_then(|m| {
            let table = m.table.address(&bars, m.table.length, mapped)?;
            Some((m, table as usize))
        });
        let mut command = cfg::command(&function) | cfg::COMMAND_MEMORY | cfg::COMMAND_BUS_MASTER;
        if let Some((m, _)) = &msix {
            // Every entry starts masked; vector 0 is unmasked once it points
            // at the local APIC (`route_msix`).
            cfg::set_msix_control(&function, m, cfg::MSIX_ENABLE);
            command |= cfg::COMMAND_INTX_DISABLE;
        }
        cfg::set_command(&function, command);
        Ok(Pci {
            function,
            common: common as usize,
            notify: notify as usize,
            notify_len: notify_region.length,
            notify_multiplier,
            isr: isr.map(|a| a as usize),
            device: device as usize,
            device_len,
            msix,
            vector_refused: Cell::new(false),
            notify_at: RefCell::new(Vec::new()),
        })
    }

    // Accesses to the common configuration structure: `probe` checked that
    // it lies inside a mapped BAR and is at least COMMON_CFG_LEN long;
    // every offset used is one of the constants above, below that, and
    // aligned to its width. These are device registers, not memory Rust
    // owns.

    fn read8(&self, offset: usize) -> u8 {
        // SAFETY: see above.
        unsafe { read_volatile((self.common + offset) as *const u8) }
    }

    fn write8(&self, offset: usize, value: u8) {
        // SAFETY: see above.
        unsafe { write_volatile((self.common + offset) as *mut u8, value) }
    }

    fn read16(&self, offset: usize) -> u16 {
        // SAFETY: see above.
        unsafe { read_volatile((self.common + offset) as *const u16) }
    }

    fn write16(&self, offset: usize, value: u16) {
        // SAFETY: see above.
        unsafe { write_volatile((self.common + offset) as *mut u16, value) }
    }

    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: see above.
        unsafe { read_volatile((self.common + offset) as *const u32) }
    }

    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: see above.
        unsafe { write_volatile((self.common + offset) as *mut u32, value) }
    }

    fn fail(&self) {
        self.write8(DEVICE_STATUS, FAILED);
    }

    /// Resets the device, negotiates `wanted` features (VIRTIO_F_VERSION_1
    /// is added and required) and returns those accepted.
    pub fn begin(&self, wanted: u64) -> Result<u64, SetupError> {
        let accepted = negotiate(self, wanted)?;
        // Configuration changes interrupt nobody.
        self.write16(CONFIG_MSIX_VECTOR, NO_VECTOR);
        Ok(accepted)
    }

    /// Sets up queue `index` with at most `max_size` entries (a power of
    /// two) and at least `min_size`, on MSI-X vector 0, and enables it.
    pub fn queue(&self, index: u16, max_size: u16, min_size: u16) -> Result<Queue, SetupError> {
        if index >= self.read16(NUM_QUEUES) {
            self.fail();
            return Err(SetupError::Queue);
        }
        self.write16(QUEUE_SELECT, index);
        if self.read16(QUEUE_ENABLE) != 0 {
            return Err(SetupError::Queue);
        }
        let Some(size) = queue_size(self.read16(QUEUE_SIZE), max_size, min_size) else {
            self.fail();
            return Err(SetupError::Queue);
        };
        // Where to notify: inside the notification structure, or not at all.
        let offset = (self.read16(QUEUE_NOTIFY_OFF) as u64) * self.notify_multiplier as u64;
        if offset + 2 > self.notify_len as u64 {
            self.fail();
            return Err(SetupError::Pci(
                "a queue's notification address lies outside the notification structure",
            ));
        }
        let queue = Queue::new(size, index);
        let (desc, driver, device) = queue.addresses();
        self.write16(QUEUE_SIZE, size);
        if self.msix.is_some() {
            self.write16(QUEUE_MSIX_VECTOR, 0);
            if self.read16(QUEUE_MSIX_VECTOR) != 0 {
                self.vector_refused.set(true);
            }
        }
        for (register, address) in [
            (QUEUE_DESC, desc),
            (QUEUE_DRIVER, driver),
            (QUEUE_DEVICE, device),
        ] {
            self.write32(register, address as u32);
            self.write32(register + 4, (address >> 32) as u32);
        }
        self.notify_at
            .borrow_mut()
            .push((index, self.notify + offset as usize));
        self.write16(QUEUE_ENABLE, 1);
        Ok(queue)
    }

    /// Tells the device the driver is ready: the queues are live.
    pub fn finish(&self) {
        self.write8(
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
            // SAFETY: `queue` checked that the address and the two bytes
            // after it lie inside the notification structure, inside a
            // mapped BAR; a device register.
            unsafe { write_volatile(at as *mut u16, index) };
        }
    }

    /// Without MSI-X, reads (and so clears) the ISR status; with it, there
    /// is nothing to acknowledge.
    pub fn ack_interrupt(&self) {
        if self.interrupt() == Interrupt::MsiX {
            return;
        }
        if let Some(isr) = self.isr {
            // SAFETY: `probe` checked that the ISR byte lies inside a
            // mapped BAR; reading it clears it, nothing else.
            unsafe { read_volatile(isr as *const u8) };
        }
    }

    /// Reads `N` bytes of device-specific configuration at `offset`, in
    /// dwords where aligned, else bytes; retried while the generation
    /// changes (a bounded number of times). Bytes past the structure read
    /// as zero.
    pub fn config<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut bytes = [0u8; N];
        let len = self.device_len as usize;
        for _ in 0..64 {
            let before = self.read8(CONFIG_GENERATION);
            let mut i = 0;
            while i < N {
                let at = offset.saturating_add(i);
                if at.is_multiple_of(4) && i + 4 <= N && at + 4 <= len {
                    // SAFETY: inside the device-specific structure (checked
                    // against its length, which `probe` checked against its
                    // BAR), aligned.
                    let word = unsafe { read_volatile((self.device + at) as *const u32) };
                    bytes[i..i + 4].copy_from_slice(&word.to_le_bytes());
                    i += 4;
                } else {
                    if at < len {
                        // SAFETY: as above, one byte.
                        bytes[i] = unsafe { read_volatile((self.device + at) as *const u8) };
                    }
                    i += 1;
                }
            }
            if self.read8(CONFIG_GENERATION) == before {
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
        let entry = *table as *mut u32;
        // SAFETY: entry 0 of the MSI-X table, whose `entries` * 16 bytes
        // `probe` checked lie inside a mapped BAR; device registers.
        unsafe {
            write_volatile(entry, address as u32);
            write_volatile(entry.add(1), (address >> 32) as u32);
            write_volatile(entry.add(2), data);
            write_volatile(entry.add(3), 0); // unmasked
        }
        let control = cfg::msix_control(&self.function, msix);
        control & cfg::MSIX_ENABLE != 0 && control & cfg::MSIX_FUNCTION_MASK == 0
    }

    /// The function's address, for messages.
    pub fn function(&self) -> Function {
        self.function
    }
}

impl Registers for Pci {
    fn status(&self) -> u8 {
        self.read8(DEVICE_STATUS)
    }

    fn set_status(&self, status: u8) {
        self.write8(DEVICE_STATUS, status);
    }

    fn device_features(&self, word: u32) -> u32 {
        self.write32(DEVICE_FEATURE_SELECT, word);
        self.read32(DEVICE_FEATURE)
    }

    fn set_driver_features(&self, word: u32, bits: u32) {
        self.write32(DRIVER_FEATURE_SELECT, word);
        self.write32(DRIVER_FEATURE, bits);
    }
}
