//! What the virtio-pci transport reads out of a PCI function's
//! configuration space (virtio 1.2, section 4.1): which virtio device it
//! is, its memory BARs, where its vendor capabilities put the common,
//! notification, ISR and device-specific structures, and its MSI-X table.
//!
//! Configuration space is reached through [`ConfigSpace`], so this is host
//! code, unit-tested against a made-up function. Every pointer, offset and
//! length here comes from the device and is checked: a capability list
//! that loops or leaves the 256 bytes, a structure that does not fit its
//! BAR, a BAR that wraps around the address space — each gives `None`,
//! never a panic and never an address outside what the device declared.

/// The virtio vendor (Red Hat, Inc.).
pub const VIRTIO_VENDOR: u16 = 0x1af4;

// Offsets in a type 0 (and type 1) configuration header.
const COMMAND: u8 = 0x04;
const STATUS: u8 = 0x06;
const HEADER_TYPE: u8 = 0x0e;
const BAR0: u8 = 0x10;
const SUBSYSTEM_ID: u8 = 0x2e;
const CAPABILITIES: u8 = 0x34;
/// Secondary bus number of a PCI-to-PCI bridge (type 1 header).
pub const SECONDARY_BUS: u8 = 0x19;

/// Command register: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (the device may DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: the capability list exists.
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Capability IDs.
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
/// Most capabilities followed: more means a loop.
const MAX_CAPABILITIES: usize = 48;

/// virtio_pci_cap.cfg_type values.
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
const ISR_CFG: u8 = 3;
const DEVICE_CFG: u8 = 4;

/// Size of `struct virtio_pci_common_cfg` up to `queue_device` (virtio 1.0).
pub const COMMON_CFG_LEN: u32 = 0x38;

/// A function's 256 bytes of configuration space, in aligned dwords.
pub trait ConfigSpace {
    /// The dword at `offset` (a multiple of 4).
    fn read32(&self, offset: u8) -> u32;
    /// Writes the dword at `offset` (a multiple of 4).
    fn write32(&self, offset: u8, value: u32);

    /// The byte at `offset`.
    fn read8(&self, offset: u8) -> u8 {
        (self.read32(offset & !3) >> (8 * (offset & 3))) as u8
    }

    /// The 16-bit word at `offset` (a multiple of 2).
    fn read16(&self, offset: u8) -> u16 {
        (self.read32(offset & !3) >> (8 * (offset & 2))) as u16
    }
}

/// The vendor and device IDs; `None` for an empty slot.
pub fn ids(cfg: &impl ConfigSpace) -> Option<(u16, u16)> {
    let id = cfg.read32(0);
    let (vendor, device) = (id as u16, (id >> 16) as u16);
    (vendor != 0xffff && vendor != 0).then_some((vendor, device))
}

/// The header type without the multi-function bit (0 device, 1 bridge),
/// and whether the device has more than one function.
pub fn header_type(cfg: &impl ConfigSpace) -> (u8, bool) {
    let t = cfg.read8(HEADER_TYPE);
    (t & 0x7f, t & 0x80 != 0)
}

/// The virtio device type of a function (1 net, 2 block, 4 entropy...):
/// modern IDs are 0x1040 + type; transitional ones (0x1000-0x103f) carry
/// the type in the subsystem ID. `None` for anything else.
pub fn virtio_type(cfg: &impl ConfigSpace) -> Option<u32> {
    let (vendor, device) = ids(cfg)?;
    if vendor != VIRTIO_VENDOR {
        return None;
    }
    match device {
        0x1000..=0x103f => Some(cfg.read16(SUBSYSTEM_ID) as u32).filter(|&t| t != 0),
        0x1041..=0x107f => Some(device as u32 - 0x1040),
        _ => None,
    }
}

/// A memory BAR: where the firmware put it and how large it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Physical address.
    pub address: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

/// The command register.
pub fn command(cfg: &impl ConfigSpace) -> u16 {
    cfg.read16(COMMAND)
}

/// Writes the command register (the status register's write-one-to-clear
/// bits are written as zero: left alone).
pub fn set_command(cfg: &impl ConfigSpace, value: u16) {
    cfg.write32(COMMAND, value as u32);
}

/// The memory BARs of a type 0 function, sized (memory decoding is off
/// while they are, then restored). I/O BARs, unassigned (zero) and
/// malformed ones are `None`; a 64-bit BAR takes its slot and the next.
pub fn memory_bars(cfg: &impl ConfigSpace) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    let saved = command(cfg);
    set_command(cfg, saved & !COMMAND_MEMORY);
    let mut i = 0u8;
    while i < 6 {
        let at = BAR0 + 4 * i;
        let low = cfg.read32(at);
        let kind = (low >> 1) & 3;
        if low & 1 != 0 || (kind != 0 && kind != 2) {
            i += 1; // I/O, or a reserved type
            continue;
        }
        let wide = kind == 2;
        if wide && i == 5 {
            break; // a 64-bit BAR without its upper half
        }
        let probe = |offset: u8, original: u32| {
            cfg.write32(offset, u32::MAX);
            let mask = cfg.read32(offset);
            cfg.write32(offset, original);
            mask
        };
        let mut address = (low & !0xf) as u64;
        let mut mask = (probe(at, low) & !0xf) as u64;
        if wide {
            let high = cfg.read32(at + 4);
            address |= (high as u64) << 32;
            mask |= (probe(at + 4, high) as u64) << 32;
        } else {
            mask |= 0xffff_ffff_0000_0000;
        }
        let size = (!mask).wrapping_add(1);
        let sane = mask != 0
            && size.is_power_of_two()
            && address != 0
            && address.is_multiple_of(size)
            && address.checked_add(size).is_some();
        if sane {
            bars[i as usize] = Some(Bar { address, size });
        }
        i += if wide { 2 } else { 1 };
    }
    set_command(cfg, saved);
    bars
}

/// A structure in a BAR, as a capability describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Which BAR (0-5).
    pub bar: u8,
    /// Offset inside the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

impl Region {
    /// The region's physical address, if it lies inside its BAR, the BAR
    /// inside the first `mapped` bytes, and it is at least `min` long.
    pub fn address(&self, bars: &[Option<Bar>; 6], min: u32, mapped: u64) -> Option<u64> {
        let bar = (*bars.get(self.bar as usize)?)?;
        let end = (self.offset as u64).checked_add(self.length as u64)?;
        let bar_end = bar.address.checked_add(bar.size)?;
        // `then`, not `then_some`: the sum may overflow when the checks fail.
        (self.length >= min && end <= bar.size && bar_end <= mapped)
            .then(|| bar.address + self.offset as u64)
    }
}

/// The MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    /// Where the capability is in configuration space.
    pub capability: u8,
    /// Entries in the table.
    pub entries: u16,
    /// The table's place: a BAR and an offset, `entries` * 16 bytes long.
    pub table: Region,
}

/// MSI-X message control: enabled.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X message control: every vector masked.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// Sets the MSI-X message control register.
pub fn set_msix_control(cfg: &impl ConfigSpace, msix: &Msix, control: u16) {
    let at = msix.capability;
    let low = cfg.read32(at) & 0xffff;
    cfg.write32(at, low | (control as u32) << 16);
}

/// The MSI-X message control register.
pub fn msix_control(cfg: &impl ConfigSpace, msix: &Msix) -> u16 {
    (cfg.read32(msix.capability) >> 16) as u16
}

/// What a virtio function's capabilities say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `struct virtio_pci_common_cfg`.
    pub common: Option<Region>,
    /// The notification area, and its `notify_off_multiplier`.
    pub notify: Option<(Region, u32)>,
    /// The ISR status byte.
    pub isr: Option<Region>,
    /// The device-specific configuration.
    pub device: Option<Region>,
    /// The MSI-X capability.
    pub msix: Option<Msix>,
}

/// Walks the capability list; the first usable capability of each kind
/// counts (as the specification asks of drivers).
pub fn capabilities(cfg: &impl ConfigSpace) -> Capabilities {
    let mut found = Capabilities::default();
    if cfg.read16(STATUS) & STATUS_CAPABILITIES == 0 {
        return found;
    }
    let mut at = cfg.read8(CAPABILITIES) & 0xfc;
    for _ in 0..MAX_CAPABILITIES {
        // A capability sits after the header and holds at least a dword.
        if !(0x40..=0xfc).contains(&at) {
            break;
        }
        let head = cfg.read32(at);
        let (id, next) = (head as u8, (head >> 8) as u8 & 0xfc);
        let len = (head >> 16) as u8;
        let room = 256 - at as usize;
        match id {
            CAP_VENDOR if len >= 16 && len as usize <= room => {
                let region = Region {
                    bar: cfg.read8(at + 4),
                    offset: cfg.read32(at + 8),
                    length: cfg.read32(at + 12),
                };
                let kind = (head >> 24) as u8;
                if region.bar <= 5 {
                    match kind {
                        COMMON_CFG if found.common.is_none() => found.common = Some(region),
                        NOTIFY_CFG if found.notify.is_none() && len >= 20 => {
                            found.notify = Some((region, cfg.read32(at + 16)));
                        }
                        ISR_CFG if found.isr.is_none() => found.isr = Some(region),
                        DEVICE_CFG if found.device.is_none() => found.device = Some(region),
                        _ => {}
                    }
                }
            }
            CAP_MSIX if room >= 12 && found.msix.is_none() => {
                let entries = ((head >> 16) as u16 & 0x7ff) + 1;
                let table = cfg.read32(at + 4);
                found.msix = Some(Msix {
                    capability: at,
                    entries,
                    table: Region {
                        bar: (table & 7) as u8,
                        offset: table & !7,
                        length: entries as u32 * 16,
                    },
                });
            }
            _ => {}
        }
        at = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// A made-up function: 256 bytes, with BARs that answer sizing probes.
    struct Function {
        bytes: RefCell<[u8; 256]>,
        /// Size of each BAR slot's decoder (0: none); a 64-bit BAR's upper
        /// slot has size 0 and is handled through the lower one.
        bar_sizes: [u64; 6],
    }

    impl Function {
        fn new(vendor: u16, device: u16) -> Function {
            let f = Function {
                bytes: RefCell::new([0; 256]),
                bar_sizes: [0; 6],
            };
            f.put(0, &vendor.to_le_bytes());
            f.put(2, &device.to_le_bytes());
            f
        }

        /// Writes `bytes` at `at`; what falls past the 256 bytes is lost.
        fn put(&self, at: usize, bytes: &[u8]) {
            let end = (at + bytes.len()).min(256);
            self.bytes.borrow_mut()[at..end].copy_from_slice(&bytes[..end - at]);
        }

        fn get32(&self, at: usize) -> u32 {
            u32::from_le_bytes(self.bytes.borrow()[at..at + 4].try_into().unwrap())
        }

        /// A 64-bit memory BAR in slots `i` and `i + 1`.
        fn bar64(&mut self, i: usize, address: u64, size: u64) {
            self.put(0x10 + 4 * i, &((address as u32) | 0b100).to_le_bytes());
            self.put(0x14 + 4 * i, &((address >> 32) as u32).to_le_bytes());
            self.bar_sizes[i] = size;
        }

        /// Adds a capability at `at` pointing to `next`.
        fn cap(&self, at: u8, id: u8, next: u8, rest: &[u8]) {
            self.put(at as usize, &[id, next]);
            self.put(at as usize + 2, rest);
        }

        /// A virtio vendor capability.
        fn virtio_cap(&self, at: u8, next: u8, kind: u8, bar: u8, offset: u32, length: u32) {
            let mut rest = [0u8; 18];
            rest[0] = if kind == NOTIFY_CFG { 20 } else { 16 };
            rest[1] = kind;
            rest[2] = bar;
            rest[6..10].copy_from_slice(&offset.to_le_bytes());
            rest[10..14].copy_from_slice(&length.to_le_bytes());
            rest[14..18].copy_from_slice(&4u32.to_le_bytes()); // multiplier
            self.cap(at, CAP_VENDOR, next, &rest);
        }

        fn with_capabilities(&self, first: u8) {
            self.put(STATUS as usize, &STATUS_CAPABILITIES.to_le_bytes());
            self.put(CAPABILITIES as usize, &[first]);
        }
    }

    impl ConfigSpace for Function {
        fn read32(&self, offset: u8) -> u32 {
            self.get32(offset as usize)
        }

        fn write32(&self, offset: u8, value: u32) {
            let at = offset as usize;
            if (0x10..0x28).contains(&at) && value == u32::MAX {
                // A sizing probe: the decoder's mask, type bits kept.
                let slot = (at - 0x10) / 4;
                let (size, upper) = match self.bar_sizes[slot] {
                    0 if slot > 0 && self.bar_sizes[slot - 1] != 0 => {
                        (self.bar_sizes[slot - 1], true)
                    }
                    s => (s, false),
                };
                let mask = (!(size.wrapping_sub(1))) & !0xf;
                let word = if size == 0 {
                    0
                } else if upper {
                    (mask >> 32) as u32
                } else {
                    (mask as u32) | (self.get32(at) & 0xf)
                };
                self.put(at, &word.to_le_bytes());
                return;
            }
            self.put(at, &value.to_le_bytes());
        }
    }

    #[test]
    fn device_types_from_modern_and_transitional_ids() {
        assert_eq!(virtio_type(&Function::new(0x1af4, 0x1041)), Some(1));
        assert_eq!(virtio_type(&Function::new(0x1af4, 0x1044)), Some(4));
        let transitional = Function::new(0x1af4, 0x1001);
        transitional.put(0x2e, &2u16.to_le_bytes());
        assert_eq!(virtio_type(&transitional), Some(2));
        assert_eq!(virtio_type(&Function::new(0x8086, 0x1041)), None);
        assert_eq!(virtio_type(&Function::new(0xffff, 0xffff)), None);
        assert_eq!(ids(&Function::new(0xffff, 0xffff)), None);
    }

    #[test]
    fn bars_are_sized_and_restored() {
        let mut f = Function::new(0x1af4, 0x1041);
        f.put(0x10, &0xfebc_0000u32.to_le_bytes()); // 32-bit, 4 KiB
        f.bar_sizes[0] = 0x1000;
        f.put(0x14, &0xc041u32.to_le_bytes()); // I/O
        f.bar64(4, 0x1_fe00_0000, 0x4000);
        f.put(0x04, &(COMMAND_MEMORY | COMMAND_BUS_MASTER).to_le_bytes());
        let bars = memory_bars(&f);
        assert_eq!(
            bars,
            [
                Some(Bar {
                    address: 0xfebc_0000,
                    size: 0x1000
                }),
                None,
                None,
                None,
                Some(Bar {
                    address: 0x1_fe00_0000,
                    size: 0x4000
                }),
                None,
            ]
        );
        assert_eq!(f.get32(0x10), 0xfebc_0000, "BAR restored after sizing");
        assert_eq!(f.get32(0x24), 1, "upper half restored");
        assert_eq!(command(&f), COMMAND_MEMORY | COMMAND_BUS_MASTER);
    }

    #[test]
    fn misaligned_or_unassigned_bars_are_refused() {
        let mut f = Function::new(0x1af4, 0x1041);
        f.bar64(0, 0x1000, 0x4000); // not aligned to its size
        f.bar64(2, 0, 0x4000); // unassigned
        f.bar64(4, 0xffff_ffff_ffff_c000, 0x4000); // ends past 2^64
        assert_eq!(memory_bars(&f), [None; 6]);
    }

    #[test]
    fn capabilities_are_found_and_regions_checked() {
        let mut f = Function::new(0x1af4, 0x1042);
        f.bar64(4, 0xfebf_4000, 0x4000);
        f.with_capabilities(0x40);
        f.virtio_cap(0x40, 0x54, COMMON_CFG, 4, 0, 0x1000);
        f.virtio_cap(0x54, 0x68, NOTIFY_CFG, 4, 0x3000, 0x1000);
        f.virtio_cap(0x68, 0x7c, ISR_CFG, 4, 0x1000, 0x1000);
        f.virtio_cap(0x7c, 0x90, DEVICE_CFG, 4, 0x2000, 0x1000);
        // A second common capability is ignored: the first one counts.
        f.virtio_cap(0x90, 0xa4, COMMON_CFG, 4, 0x3800, 0x100);
        f.cap(0xa4, CAP_MSIX, 0, &[1, 0, 1, 0, 0, 0]); // 2 entries, BAR 1
        let caps = capabilities(&f);
        let common = caps.common.unwrap();
        assert_eq!((common.bar, common.offset), (4, 0));
        assert_eq!(caps.notify.unwrap().1, 4);
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
        let msix = caps.msix.unwrap();
        assert_eq!(
            (msix.entries, msix.table.bar, msix.capability),
            (2, 1, 0xa4)
        );

        let bars = memory_bars(&f);
        let mapped = 4 << 30;
        assert_eq!(
            common.address(&bars, COMMON_CFG_LEN, mapped),
            Some(0xfebf_4000)
        );
        // Too short, past the BAR, in a BAR that does not exist, or outside
        // the mapping: no address.
        assert_eq!(common.address(&bars, 0x2000, mapped), None);
        let past = Region {
            offset: 0x3f00,
            ..common
        };
        assert_eq!(past.address(&bars, 4, mapped), None);
        let huge = Region {
            offset: u32::MAX,
            length: u32::MAX,
            ..common
        };
        assert_eq!(huge.address(&bars, 4, mapped), None);
        assert_eq!(Region { bar: 0, ..common }.address(&bars, 4, mapped), None);
        assert_eq!(common.address(&bars, 4, 0xfebf_0000), None);
    }

    /// Issue 18: a BAR at the top of the address space and an offset past
    /// it overflowed `bar.address + offset` in builds with overflow checks,
    /// although the bounds check had already said no.
    #[test]
    fn a_region_past_a_bar_at_the_top_of_memory_has_no_address() {
        let mut bars = [None; 6];
        bars[4] = Some(Bar {
            address: 0xffff_ffff_f000_0000,
            size: 128 << 20,
        });
        let region = Region {
            bar: 4,
            offset: 0x1000_0000,
            length: 0x1000,
        };
        assert_eq!(region.address(&bars, 1, u64::MAX), None);
        let inside = Region {
            offset: 0x10_0000,
            ..region
        };
        assert_eq!(
            inside.address(&bars, 1, u64::MAX),
            Some(0xffff_ffff_f010_0000)
        );
    }

    #[test]
    fn looping_or_stray_capability_lists_end() {
        let f = Function::new(0x1af4, 0x1041);
        f.with_capabilities(0x40);
        f.virtio_cap(0x40, 0x54, COMMON_CFG, 4, 0, 0x1000);
        f.virtio_cap(0x54, 0x40, ISR_CFG, 4, 0, 0x1000); // back to the first
        let caps = capabilities(&f);
        assert!(caps.common.is_some() && caps.isr.is_some());

        // A pointer into the header, a capability running off the end, a
        // BAR number past 5: all ignored.
        let g = Function::new(0x1af4, 0x1041);
        g.with_capabilities(0x10);
        assert_eq!(capabilities(&g), Capabilities::default());
        g.put(CAPABILITIES as usize, &[0xf8]);
        g.virtio_cap(0xf8, 0, COMMON_CFG, 4, 0, 0x1000);
        assert_eq!(capabilities(&g).common, None);
        g.put(CAPABILITIES as usize, &[0x40]);
        g.virtio_cap(0x40, 0, COMMON_CFG, 9, 0, 0x1000);
        assert_eq!(capabilities(&g).common, None);
        // No capability list at all.
        let h = Function::new(0x1af4, 0x1041);
        h.put(CAPABILITIES as usize, &[0x40]);
        h.virtio_cap(0x40, 0, COMMON_CFG, 4, 0, 0x1000);
        assert_eq!(capabilities(&h), Capabilities::default());
    }
}
