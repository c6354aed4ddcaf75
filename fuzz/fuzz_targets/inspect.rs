//! An image file, as `lamina inspect` reads it beyond what a tender does:
//! every note of every PT_NOTE segment and the section headers with their
//! names (`lamina_tender::elf_contents`). Each note must lie inside its
//! segment, each section's name be read without panicking.
#![no_main]

use lamina_tender::elf::Elf;
use lamina_tender::elf_contents::{all_notes, sections};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(elf) = Elf::parse(bytes) else {
        return;
    };
    if let Ok(notes) = all_notes(&elf) {
        for note in notes {
            // Every slice points into the file.
            let inside = |s: &[u8]| {
                let start = s.as_ptr() as usize;
                let file = bytes.as_ptr() as usize;
                start >= file && start + s.len() <= file + bytes.len()
            };
            assert!(inside(note.owner) && inside(note.desc));
        }
    }
    if let Ok(sections) = sections(&elf) {
        assert!(sections.len() <= usize::from(u16::MAX));
    }
});
