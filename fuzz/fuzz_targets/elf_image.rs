//! An image file, as a tender reads it: the ELF header and program
//! headers, the ABI1/MFT1/LMN1 notes for every target, the Solo5 segment
//! rules, then loading into guest memory.
#![no_main]

use lamina_abi::note::AbiTarget;
use lamina_abi::GUEST_MIN_BASE;
use lamina_tender::elf::{Elf, Image};
use lamina_tender::mem::GuestMemory;
use lamina_tender::notes::read_notes;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

/// Guest memory of the loads: small, so that zeroing a segment's tail
/// stays fast, and mapped once.
const MEM_SIZE: u64 = 4 << 20;

thread_local! {
    static MEMORY: RefCell<GuestMemory> =
        RefCell::new(GuestMemory::anywhere(MEM_SIZE).expect("mapping the guest memory"));
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(elf) = Elf::parse(bytes) else {
        return;
    };
    for target in [AbiTarget::Hvt, AbiTarget::Spt, AbiTarget::Virtio] {
        if let Ok(notes) = read_notes(&elf, target) {
            assert!(lamina_abi::mft::Manifest::parse(&notes.manifest).is_ok());
        }
    }
    let Ok(image) = Image::check(elf, MEM_SIZE) else {
        return;
    };
    assert!(image.entry >= GUEST_MIN_BASE && image.entry < MEM_SIZE);
    let mut previous_end = 0;
    for segment in &image.segments {
        assert!(segment.start >= GUEST_MIN_BASE && segment.start >= previous_end);
        assert!(segment.start <= segment.header.vaddr && segment.end <= MEM_SIZE);
        assert!(!(segment.protection.write && segment.protection.exec));
        previous_end = segment.end;
    }
    assert_eq!(image.kernel_end, previous_end);
    MEMORY.with(|memory| {
        image
            .load(&mut memory.borrow_mut())
            .expect("a checked image loads");
    });
});
