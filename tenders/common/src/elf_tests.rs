use super::*;
use crate::elf_writer::{ElfWriter, RawSegment};
use lamina_abi::mft::DeviceType;
use lamina_abi::note::{AbiTarget, TYPE_ABI1, TYPE_LMN1, TYPE_MFT1};

const MEM: u64 = 32 << 20;
const CODE: &[u8] = &[0xf4; 16];

fn good() -> ElfWriter {
    ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_X, CODE, 0x1000)
        .load(0x101000, PF_R, b"rodata", 0x1000)
        .load(0x102000, PF_R | PF_W, b"data", 0x3000)
        .abi_note(AbiTarget::Hvt)
        .manifest_note(&[("storage", DeviceType::BlockBasic)])
}

fn check(bytes: &[u8]) -> Result<Image<'_>, ElfError> {
    Image::check(Elf::parse(bytes)?, MEM)
}

#[test]
fn a_good_image_loads_with_its_protections() {
    let bytes = good().build();
    let image = check(&bytes).unwrap();
    assert_eq!(image.entry, 0x100000);
    assert_eq!(image.kernel_end, 0x105000);
    assert_eq!(image.segments.len(), 3);
    assert!(image.segments[0].protection.exec && !image.segments[0].protection.write);
    let mut mem = GuestMemory::anywhere(MEM).unwrap();
    mem.bytes_mut(0x102004, 8).unwrap().fill(0xaa);
    image.load(&mut mem).unwrap();
    assert_eq!(mem.bytes(0x100000, 16).unwrap().to_vec(), CODE);
    assert_eq!(mem.bytes(0x102000, 4).unwrap().to_vec(), b"data");
    // The memory-only tail of a segment is zeroed even if it was not.
    assert_eq!(mem.bytes(0x102004, 8).unwrap().to_vec(), &[0; 8]);
    image
        .placement()
        .protect(&mut mem, HostProtection::ExecAsRead)
        .unwrap();
    assert!(mem.bytes(0x100000, 1).is_ok());
    assert!(mem.bytes_mut(0x100000, 1).is_err());
    assert!(mem.bytes_mut(0x101000, 1).is_err());
    assert!(mem.bytes_mut(0x102000, 1).is_ok());
}

#[test]
fn checked_protections_refuse_the_tender_but_leave_the_host_mapping_writable() {
    let bytes = good().build();
    let image = check(&bytes).unwrap();
    let mut mem = GuestMemory::anywhere(MEM).unwrap();
    image.load(&mut mem).unwrap();
    image
        .placement()
        .protect(&mut mem, HostProtection::Checked)
        .unwrap();
    assert!(mem.bytes(0x100000, 1).is_ok());
    assert!(mem.bytes_mut(0x100000, 1).is_err());
    assert!(mem.bytes_mut(0x101000, 1).is_err());
    assert!(mem.bytes_mut(0x102000, 1).is_ok());
    // The host mapping of the text is still writable: mprotect'ed
    // read-only, /proc/self/maps would show a read-only range there.
    let text = mem.host_address() + 0x100000;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            let (range, _) = l.split_once(' ').unwrap();
            let (from, to) = range.split_once('-').unwrap();
            let (from, to) = (
                u64::from_str_radix(from, 16).unwrap(),
                u64::from_str_radix(to, 16).unwrap(),
            );
            from <= text && text < to
        })
        .unwrap();
    assert!(line.split(' ').nth(1).unwrap().starts_with("rw"), "{line}");
}

#[test]
fn empty_segments_are_skipped_like_solo5() {
    let bytes = ElfWriter::new(0x100000)
        .load(0, PF_R, &[], 0x10) // Solo5's empty .tdata segment at 0
        .load(0x100000, PF_R | PF_X, CODE, 0x1000)
        .load(0x101000, PF_R | PF_W, &[], 0x200000) // bss only
        .build();
    let image = check(&bytes).unwrap();
    assert_eq!(image.segments.len(), 1);
    assert_eq!(image.kernel_end, 0x101000);
}

#[test]
fn corrupt_headers_are_refused() {
    let bytes = good().build();
    let mut bad = bytes.clone();
    bad[0] = 0;
    assert_eq!(Elf::parse(&bad).err(), Some(ElfError::NotElf));
    for (at, value, field) in [
        (4, 1, "EI_CLASS"),
        (5, 2, "EI_DATA"),
        (16, 3, "e_type"), // ET_DYN: PIE
        (18, 183, "e_machine"),
        (20, 0, "e_version"),
        (52, 63, "e_ehsize"),
        (54, 55, "e_phentsize"),
        (56, 0, "e_phnum"),
    ] {
        let mut bad = bytes.clone();
        bad[at] = value;
        match Elf::parse(&bad) {
            Err(ElfError::Unsupported { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut bad = bytes.clone();
    bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
    assert!(matches!(Elf::parse(&bad), Err(ElfError::Truncated { .. })));
}

#[test]
fn truncated_images_are_refused() {
    let bytes = good().build();
    assert!(matches!(
        Elf::parse(&bytes[..63]),
        Err(ElfError::Truncated { .. })
    ));
    assert!(matches!(
        Elf::parse(&bytes[..100]),
        Err(ElfError::Truncated { .. })
    ));
    // Headers intact, segment contents cut off.
    assert!(matches!(
        check(&bytes[..0x1008]),
        Err(ElfError::Truncated { .. })
    ));
}

#[test]
fn entry_must_be_inside_memory_above_1mib() {
    for entry in [0, 0xfffff, MEM, u64::MAX] {
        let bytes = ElfWriter::new(entry)
            .load(0x100000, PF_R | PF_X, CODE, 0)
            .build();
        assert!(
            matches!(check(&bytes), Err(ElfError::EntryOutOfRange { .. })),
            "{entry:#x}"
        );
    }
}

#[test]
fn write_and_exec_together_is_refused() {
    let bytes = ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_W | PF_X, CODE, 0)
        .build();
    assert!(matches!(
        check(&bytes),
        Err(ElfError::WriteExec { index: 0, .. })
    ));
}

#[test]
fn segments_outside_memory_are_refused() {
    let past_end = ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_X, CODE, 0)
        .load(MEM - 0x1000, PF_R | PF_W, b"x", 0x2000)
        .build();
    assert!(matches!(
        check(&past_end),
        Err(ElfError::OutsideMemory { index: 1, .. })
    ));
    let above = ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_X, CODE, 0)
        .load(MEM, PF_R, b"x", 0)
        .build();
    assert!(matches!(check(&above), Err(ElfError::OutsideMemory { .. })));
    let wraps = ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_X, CODE, u64::MAX - 0x100)
        .build();
    assert!(matches!(check(&wraps), Err(ElfError::OutsideMemory { .. })));
}

#[test]
fn layout_rules_are_enforced() {
    let raw = |vaddr, align| RawSegment {
        p_type: PT_LOAD,
        flags: PF_R,
        vaddr,
        memsz: 0x1000,
        align,
        contents: vec![1],
    };
    let cases = [
        (vec![raw(0x1000, 0x1000)], "below 1 MiB"),
        (vec![raw(0x100000, 0)], "alignment"),
        (vec![raw(0x100000, 3)], "alignment"),
        (vec![raw(0x100010, 0x10)], "page aligned"),
        (
            vec![raw(0x102000, 0x1000), raw(0x101000, 0x1000)],
            "ascending",
        ),
        (
            vec![raw(0x101000, 0x1000), raw(0x101800, 0x1000)],
            "overlaps",
        ),
    ];
    for (segments, expect) in cases {
        let mut writer = ElfWriter::new(0x100000);
        for segment in segments {
            writer = writer.raw(segment);
        }
        let bytes = writer.build();
        let err = check(&bytes).unwrap_err().to_string();
        assert!(err.contains(expect), "{err} does not say {expect}");
    }
}

#[test]
fn notes_are_found_each_alone_in_a_pt_note() {
    let bytes = good().lamina_note(5).build();
    let elf = Elf::parse(&bytes).unwrap();
    let abi = elf
        .find_note(b"Solo5\0", TYPE_ABI1, 4, 32)
        .unwrap()
        .unwrap();
    assert_eq!(abi, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mft = elf
        .find_note(b"Solo5\0", TYPE_MFT1, 8, 6668)
        .unwrap()
        .unwrap();
    assert_eq!(mft.len(), lamina_abi::mft::manifest_size(1));
    let lmn = elf
        .find_note(b"Lamina\0", TYPE_LMN1, 4, 8)
        .unwrap()
        .unwrap();
    assert_eq!(lmn, &[5, 0, 0, 0, 0, 0, 0, 0]);
    let none = ElfWriter::new(0x100000)
        .load(0x100000, PF_R | PF_X, CODE, 0)
        .build();
    let elf = Elf::parse(&none).unwrap();
    assert_eq!(elf.find_note(b"Solo5\0", TYPE_MFT1, 8, 6668), Ok(None));
}

#[test]
fn malformed_notes_are_refused() {
    let mut oversized = good().build();
    let tiny = ElfWriter::new(0x100000).note(&[0; 8]).build();
    assert!(matches!(
        Elf::parse(&tiny)
            .unwrap()
            .find_note(b"Solo5\0", TYPE_ABI1, 4, 32),
        Err(ElfError::BadNote { .. })
    ));
    // Claim a descriptor far larger than the segment holds.
    let elf = Elf::parse(&oversized).unwrap();
    let abi_ph = elf.program_headers().find(|p| p.p_type == PT_NOTE).unwrap();
    let at = abi_ph.offset as usize + 4;
    oversized[at..at + 4].copy_from_slice(&30u32.to_le_bytes());
    let elf = Elf::parse(&oversized).unwrap();
    assert!(matches!(
        elf.find_note(b"Solo5\0", TYPE_ABI1, 4, 32),
        Err(ElfError::BadNote { .. })
    ));
}

/// No input panics: random bytes, and every truncation and single-byte
/// corruption of a good image.
#[test]
fn fuzz_never_panics() {
    let good = good().lamina_note(1).build();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let exercise = |bytes: &[u8]| {
        if let Ok(elf) = Elf::parse(bytes) {
            let _ = elf.find_note(b"Solo5\0", TYPE_MFT1, 8, 6668);
            let _ = elf.find_note(b"Lamina\0", TYPE_LMN1, 4, 8);
            if let Ok(image) = Image::check(elf, MEM) {
                let mut mem = GuestMemory::anywhere(MEM).unwrap();
                let _ = image.load(&mut mem);
            }
        }
    };
    for len in (0..good.len()).step_by(7) {
        exercise(&good[..len]);
    }
    for _ in 0..3000 {
        let mut bytes = good.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() % 0x1200) as usize % bytes.len();
            bytes[at] = next() as u8;
        }
        exercise(&bytes);
        let random: Vec<u8> = (0..next() % 300).map(|_| next() as u8).collect();
        exercise(&random);
    }
}
