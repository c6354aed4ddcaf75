//! A virtio PCI function's configuration space as a (hostile) device
//! presents it: IDs, BARs and the answers to their sizing probes, the
//! capability list, and the regions the capabilities point at.
#![no_main]

use lamina_virtio::pci::{
    capabilities, header_type, ids, memory_bars, virtio_type, Bar, ConfigSpace, Region,
    COMMON_CFG_LEN,
};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

/// Configuration space backed by the fuzzer's bytes: 256 bytes, and what
/// each BAR reads as after the driver writes all ones to it.
struct Function {
    bytes: RefCell<[u8; 256]>,
    probes: [u32; 6],
}

impl ConfigSpace for Function {
    fn read32(&self, offset: u8) -> u32 {
        let at = usize::from(offset & !3);
        u32::from_le_bytes(self.bytes.borrow()[at..at + 4].try_into().unwrap())
    }

    fn write32(&self, offset: u8, value: u32) {
        let at = usize::from(offset & !3);
        let value = match at {
            // The status register's bits are read-only or cleared by writing ones.
            0x04 => (self.read32(0x04) & 0xffff_0000) | (value & 0xffff),
            0x10..0x28 if value == u32::MAX => self.probes[(at - 0x10) / 4],
            _ => value,
        };
        self.bytes.borrow_mut()[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
}

/// Checks what `Region::address` promises: inside its BAR, the BAR inside
/// the mapped memory.
fn check(region: Region, bars: &[Option<Bar>; 6], min: u32, mapped: u64) {
    if let Some(address) = region.address(bars, min, mapped) {
        let bar = bars[usize::from(region.bar)].expect("a region's BAR exists");
        assert!(region.length >= min);
        assert!(address >= bar.address);
        assert!(address + u64::from(region.length) <= bar.address + bar.size);
        assert!(bar.address + bar.size <= mapped);
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 256 + 24 + 8 {
        return;
    }
    let mut space = [0u8; 256];
    space.copy_from_slice(&bytes[..256]);
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let function = Function {
        bytes: RefCell::new(space),
        probes: core::array::from_fn(|i| word(256 + 4 * i)),
    };
    let mapped = u64::from_le_bytes(bytes[280..288].try_into().unwrap());
    let _ = (
        ids(&function),
        header_type(&function),
        virtio_type(&function),
    );
    let bars = memory_bars(&function);
    for bar in bars.iter().flatten() {
        assert!(bar.size.is_power_of_two());
        assert!(bar.address != 0 && bar.address % bar.size == 0);
        assert!(bar.address.checked_add(bar.size).is_some());
    }
    let caps = capabilities(&function);
    let min = |extra: usize| bytes.get(288 + extra).map_or(1, |&b| u32::from(b));
    if let Some(common) = caps.common {
        check(common, &bars, COMMON_CFG_LEN, mapped);
    }
    if let Some((notify, _multiplier)) = caps.notify {
        check(notify, &bars, min(0), mapped);
    }
    if let Some(isr) = caps.isr {
        check(isr, &bars, 1, mapped);
    }
    if let Some(device) = caps.device {
        check(device, &bars, min(1), mapped);
    }
    if let Some(msix) = caps.msix {
        assert!((1..=2048).contains(&msix.entries));
        check(msix.table, &bars, u32::from(msix.entries) * 16, mapped);
    }
});
