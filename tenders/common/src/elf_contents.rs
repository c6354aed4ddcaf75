//! What a tender does not need but `lamina inspect` shows: every note of
//! every `PT_NOTE` segment (a tender reads only the first of each, Solo5's
//! rule) and the section headers. Built on the checked [`Elf`] view: every
//! offset and size read from the file is checked against it, so no input
//! makes these panic or read out of bounds (fuzz/fuzz_targets/inspect.rs).

use crate::elf::{u16_at, u32_at, u64_at, Elf, ElfError, ProgramHeader, PT_NOTE};

/// One ELF note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// The owner, without its NUL (`Solo5`, `Lamina`, `Xen`).
    pub owner: &'a [u8],
    /// `n_type`.
    pub note_type: u32,
    /// The descriptor, `n_descsz` bytes.
    pub desc: &'a [u8],
}

/// One section header, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its name from the section-name table (lossy UTF-8; empty if none).
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags` (`SHF_*`).
    pub flags: u64,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
}

/// `sh_type` of a section that takes no room in the file (`.bss`).
pub const SHT_NOBITS: u32 = 8;
/// `sh_flags` bit: writable.
pub const SHF_WRITE: u64 = 1;
/// `sh_flags` bit: occupies memory at run time.
pub const SHF_ALLOC: u64 = 2;
/// `sh_flags` bit: executable.
pub const SHF_EXECINSTR: u64 = 4;

/// Size of an ELF64 section header.
const SHDR_SIZE: u64 = 64;

/// Every note in the `PT_NOTE` segment `ph`, in order (4-byte aligned, as
/// Solo5's and Lamina's notes are: each note's owner and descriptor are
/// padded to 4 bytes).
pub fn segment_notes<'a>(elf: &Elf<'a>, ph: &ProgramHeader) -> Result<Vec<Note<'a>>, ElfError> {
    let bad = |problem| ElfError::BadNote {
        index: ph.index,
        problem,
    };
    if ph.p_type != PT_NOTE {
        return Ok(Vec::new());
    }
    let segment = elf
        .file_bytes(ph.offset, ph.filesz)
        .ok_or(ElfError::Truncated {
            what: "a note segment",
        })?;
    let mut notes = Vec::new();
    let mut at = 0usize;
    while at < segment.len() {
        let rest = &segment[at..];
        let (Some(namesz), Some(descsz), Some(note_type)) =
            (u32_at(rest, 0), u32_at(rest, 4), u32_at(rest, 8))
        else {
            return Err(bad("ends inside a note header"));
        };
        let name_len = namesz as usize;
        let desc_at = 12usize
            .checked_add(name_len.next_multiple_of(4))
            .ok_or(bad("owner name is too long"))?;
        let name = rest
            .get(12..12 + name_len)
            .ok_or(bad("owner name runs past the segment"))?;
        let desc_len = descsz as usize;
        let desc = desc_at
            .checked_add(desc_len)
            .and_then(|end| rest.get(desc_at..end))
            .ok_or(bad("descriptor runs past the segment"))?;
        // The owner's terminating NUL is not part of its name.
        let owner = name.strip_suffix(b"\0").unwrap_or(name);
        notes.push(Note {
            owner,
            note_type,
            desc,
        });
        let next = desc_at
            .checked_add(desc_len.next_multiple_of(4))
            .ok_or(bad("descriptor is too long"))?;
        at = at.checked_add(next).ok_or(bad("descriptor is too long"))?;
    }
    Ok(notes)
}

/// Every note of every `PT_NOTE` segment, in file order.
pub fn all_notes<'a>(elf: &Elf<'a>) -> Result<Vec<Note<'a>>, ElfError> {
    let mut notes = Vec::new();
    for ph in elf.program_headers() {
        notes.extend(segment_notes(elf, &ph)?);
    }
    Ok(notes)
}

/// The section headers, with their names; empty if the file has none
/// (`e_shoff` 0). Sections are optional in an executable: nothing loads
/// through them, so they are only described.
pub fn sections(elf: &Elf<'_>) -> Result<Vec<Section>, ElfError> {
    let truncated = ElfError::Truncated {
        what: "the section header table",
    };
    let header = elf.file_bytes(0, 64).ok_or(ElfError::Truncated {
        what: "the ELF header",
    })?;
    let shoff = u64_at(header, 0x28).unwrap_or(0);
    let shentsize = u16_at(header, 0x3a).map_or(0, u64::from);
    let shnum = u16_at(header, 0x3c).map_or(0, u64::from);
    let shstrndx = u16_at(header, 0x3e).map_or(0, u64::from);
    if shoff == 0 || shnum == 0 {
        return Ok(Vec::new());
    }
    if shentsize != SHDR_SIZE {
        return Err(ElfError::Unsupported {
            field: "e_shentsize",
            value: shentsize,
            expected: "64",
        });
    }
    let table = shnum
        .checked_mul(SHDR_SIZE)
        .and_then(|len| elf.file_bytes(shoff, len))
        .ok_or(truncated.clone())?;
    let field64 = |raw: &[u8], at| u64_at(raw, at).unwrap_or(0);
    let raw_header = |index: u64| {
        let at = (index * SHDR_SIZE) as usize;
        table.get(at..at + SHDR_SIZE as usize)
    };
    // The names: a string table that must itself lie in the file. A bad
    // one leaves sections nameless rather than refusing the image.
    let names = raw_header(shstrndx)
        .filter(|raw| u32_at(raw, 4) != Some(SHT_NOBITS))
        .and_then(|raw| elf.file_bytes(field64(raw, 24), field64(raw, 32)));
    let name_at = |offset: u32| -> String {
        let Some(rest) = names.and_then(|n| n.get(offset as usize..)) else {
            return String::new();
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    };
    let mut out = Vec::new();
    for index in 0..shnum {
        let raw = raw_header(index).ok_or(truncated.clone())?;
        out.push(Section {
            name: name_at(u32_at(raw, 0).unwrap_or(0)),
            sh_type: u32_at(raw, 4).unwrap_or(0),
            flags: field64(raw, 8),
            addr: field64(raw, 16),
            offset: field64(raw, 24),
            size: field64(raw, 32),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{PF_R, PF_X};
    use crate::elf_writer::ElfWriter;
    use lamina_abi::note::{features, AbiTarget};

    fn text_note(owner: &[u8], note_type: u32, text: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&(owner.len() as u32).to_le_bytes());
        note.extend_from_slice(&(text.len() as u32).to_le_bytes());
        note.extend_from_slice(&note_type.to_le_bytes());
        note.extend_from_slice(owner);
        note.resize(note.len().next_multiple_of(4), 0);
        note.extend_from_slice(text);
        note.resize(note.len().next_multiple_of(4), 0);
        note
    }

    #[test]
    fn reads_every_note_of_every_segment() {
        let mut two = text_note(b"Lamina\0", 7, b"format=1\n");
        two.extend(text_note(b"Lamina\0", 8, b"SITE=ab files=1 dir=site"));
        let bytes = ElfWriter::new(0x100000)
            .load(0x100000, PF_R | PF_X, &[0xf4], 0)
            .abi_note(AbiTarget::Hvt)
            .lamina_note(features::ANY_CPL)
            .note(&two)
            .build();
        let elf = Elf::parse(&bytes).unwrap();
        let notes = all_notes(&elf).unwrap();
        assert_eq!(notes.len(), 4);
        assert_eq!(notes[0].owner, b"Solo5");
        assert_eq!(notes[2].desc, b"format=1\n");
        assert_eq!(notes[3].note_type, 8);
        assert_eq!(notes[3].desc, b"SITE=ab files=1 dir=site");
        assert!(sections(&elf).unwrap().is_empty());
    }

    #[test]
    fn a_note_running_past_its_segment_is_an_error() {
        let mut note = text_note(b"Lamina\0", 7, b"abcd");
        note[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let bytes = ElfWriter::new(0x100000)
            .load(0x100000, PF_R | PF_X, &[0xf4], 0)
            .note(&note)
            .build();
        let elf = Elf::parse(&bytes).unwrap();
        assert!(matches!(all_notes(&elf), Err(ElfError::BadNote { .. })));
        let short = ElfWriter::new(0x100000)
            .load(0x100000, PF_R | PF_X, &[0xf4], 0)
            .note(&[1, 0, 0, 0, 0])
            .build();
        assert!(all_notes(&Elf::parse(&short).unwrap()).is_err());
    }
}
