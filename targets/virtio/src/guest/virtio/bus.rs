//! The virtio drivers' [`Bus`] inside a unikernel: device registers as
//! volatile accesses to identity-mapped memory, PCI configuration space
//! through the legacy 0xCF8/0xCFC ports (and the bus walk that finds
//! virtio functions), and the TSC for timeouts.

use crate::drivers::{Bus, RegisterWindow};
use crate::guest::hw;
use crate::pci::{self as cfg, ConfigSpace};
use alloc::vec::Vec;
use core::ptr::{read_volatile, write_volatile};

/// The guest as the drivers see it: the first `mapped` bytes of physical
/// memory are identity-mapped, device registers among them.
#[derive(Clone, Copy)]
pub struct GuestBus {
    /// The end of the identity mapping.
    pub mapped: u64,
}

impl Bus for GuestBus {
    type Window = GuestWindow;
    type Function = Function;

    fn window(&self, address: u64, len: u64) -> Option<GuestWindow> {
        let end = address.checked_add(len)?;
        (end <= self.mapped).then_some(GuestWindow {
            base: address as usize,
            len: len as usize,
        })
    }

    fn now_ns(&self) -> u64 {
        hw::monotonic_ns()
    }
}

/// `len` bytes of device registers at `base`, inside the identity mapping
/// (what [`GuestBus::window`] checked). Every access is checked against
/// the window and its width's alignment: outside, reads are all ones and
/// writes are dropped.
pub struct GuestWindow {
    base: usize,
    len: usize,
}

impl GuestWindow {
    /// The address of the `width` bytes at `offset`, if they lie inside
    /// the window and are aligned to `width`.
    fn at(&self, offset: usize, width: usize) -> Option<usize> {
        let end = offset.checked_add(width)?;
        if end > self.len {
            return None;
        }
        // Inside the window, which lies inside the mapping: no overflow.
        let address = self.base + offset;
        address.is_multiple_of(width).then_some(address)
    }
}

// SAFETY (every access below): `at` checked that the bytes lie inside the
// window, which `GuestBus::window` checked lies inside the guest's identity
// mapping, and that the address is aligned to the access. The window holds
// device registers that the device described (a BAR, or a virtio-mmio
// window on the command line), not memory that Rust owns; a volatile
// access is the device's protocol.
impl RegisterWindow for GuestWindow {
    fn read8(&self, offset: usize) -> u8 {
        let Some(a) = self.at(offset, 1) else {
            return !0;
        };
        // SAFETY: see above.
        unsafe { read_volatile(a as *const u8) }
    }

    fn read16(&self, offset: usize) -> u16 {
        let Some(a) = self.at(offset, 2) else {
            return !0;
        };
        // SAFETY: see above.
        unsafe { read_volatile(a as *const u16) }
    }

    fn read32(&self, offset: usize) -> u32 {
        let Some(a) = self.at(offset, 4) else {
            return !0;
        };
        // SAFETY: see above.
        unsafe { read_volatile(a as *const u32) }
    }

    fn write8(&self, offset: usize, value: u8) {
        if let Some(a) = self.at(offset, 1) {
            // SAFETY: see above.
            unsafe { write_volatile(a as *mut u8, value) }
        }
    }

    fn write16(&self, offset: usize, value: u16) {
        if let Some(a) = self.at(offset, 2) {
            // SAFETY: see above.
            unsafe { write_volatile(a as *mut u16, value) }
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        if let Some(a) = self.at(offset, 4) {
            // SAFETY: see above.
            unsafe { write_volatile(a as *mut u32, value) }
        }
    }
}

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

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
