//! The ELF64 loader: a checked view of the image file, the Solo5 rules for
//! what a unikernel image may ask for, segment loading and protection, and
//! the notes (ABI1, MFT1, LMN1) the image carries.
//!
//! [`Elf::parse`] checks the header and that every program header lies in
//! the file; after that no accessor can panic or read out of bounds, on any
//! input. [`Image::check`] applies the Solo5 segment rules against a memory
//! size, and [`Image::load`] copies the segments into [`GuestMemory`].
//!
//! Like Solo5's loader, `PT_LOAD`s with `p_filesz == 0` are skipped (Solo5
//! images carry an empty one at address 0 for `.tdata` and a bss-only one):
//! guest memory starts zeroed, and the guest finds its heap from `_end`.

use crate::mem::{GuestFault, GuestMemory, Protection};
use lamina_abi::{GUEST_MIN_BASE, PAGE_SIZE};
use thiserror::Error;

/// Byte ranges of the ELF64 header fields the loader reads.
mod ehdr {
    pub const SIZE: usize = 64;
    pub const MAGIC: core::ops::Range<usize> = 0..4;
    pub const CLASS: usize = 4;
    pub const DATA: usize = 5;
    pub const TYPE: usize = 16;
    pub const MACHINE: usize = 18;
    pub const VERSION: usize = 20;
    pub const ENTRY: usize = 24;
    pub const PHOFF: usize = 32;
    pub const EHSIZE: usize = 52;
    pub const PHENTSIZE: usize = 54;
    pub const PHNUM: usize = 56;
}

/// Byte offsets of the ELF64 program header fields.
mod phdr {
    pub const SIZE: usize = 56;
    pub const TYPE: usize = 0;
    pub const FLAGS: usize = 4;
    pub const OFFSET: usize = 8;
    pub const VADDR: usize = 16;
    pub const FILESZ: usize = 32;
    pub const MEMSZ: usize = 40;
    pub const ALIGN: usize = 48;
}

/// `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_type` of a note segment.
pub const PT_NOTE: u32 = 4;
/// `p_flags` bit: executable.
pub const PF_X: u32 = 1;
/// `p_flags` bit: writable.
pub const PF_W: u32 = 2;
/// `p_flags` bit: readable.
pub const PF_R: u32 = 4;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

/// Why an image was refused. Every message ends in what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ElfError {
    /// The file ends inside a structure.
    #[error("invalid executable: the file is truncated ({what} ends past the end of the file); rebuild the image")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// No ELF magic.
    #[error("invalid executable: not an ELF file; pass a unikernel image built for this tender")]
    NotElf,
    /// A header field has a value the tender does not run.
    #[error("invalid or unsupported executable: {field} is {value:#x}, expected {expected}; build a static x86_64 ELF64 executable (not PIE)")]
    Unsupported {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        expected: &'static str,
    },
    /// The entry point is not inside guest memory above 1 MiB.
    #[error("invalid executable: entry point {entry:#x} is outside [{min:#x}, {mem_size:#x}); link the image at 1 MiB or give it more --mem")]
    EntryOutOfRange {
        /// e_entry.
        entry: u64,
        /// Lowest allowed.
        min: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// A loadable segment breaks one of the Solo5 layout rules.
    #[error("invalid executable: segment {index} (vaddr {vaddr:#x}) {problem}")]
    BadSegment {
        /// Program header index.
        index: usize,
        /// Its p_vaddr.
        vaddr: u64,
        /// What is wrong and what to do.
        problem: &'static str,
    },
    /// A segment asks for memory that is both writable and executable.
    #[error("invalid executable: segment {index} (vaddr {vaddr:#x}) requests WRITE and EXEC permissions; link text and data into separate segments")]
    WriteExec {
        /// Program header index.
        index: usize,
        /// Its p_vaddr.
        vaddr: u64,
    },
    /// A segment does not fit in guest memory.
    #[error("invalid executable: segment {index} [{vaddr:#x}, {end:#x}) does not fit in {mem_size:#x} bytes of guest memory; give the guest more --mem")]
    OutsideMemory {
        /// Program header index.
        index: usize,
        /// Its p_vaddr.
        vaddr: u64,
        /// The end it needs.
        end: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// A note segment is malformed.
    #[error("invalid executable: note segment {index}: {problem}; rebuild the image")]
    BadNote {
        /// Program header index.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// Copying into guest memory failed.
    #[error("cannot load segment into guest memory: {0}")]
    Load(#[from] GuestFault),
}

/// One program header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Index in the program header table.
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags` (`PF_*`).
    pub flags: u32,
    /// File offset of the contents.
    pub offset: u64,
    /// Guest address.
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory.
    pub memsz: u64,
    /// Alignment.
    pub align: u64,
}

/// A checked view of an ELF64 executable for x86_64.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    entry: u64,
    phoff: usize,
    phnum: usize,
}

/// Little-endian integers at `at` in `bytes`, `None` past its end (the
/// section reader in `elf_contents` uses them too).
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Checks the header (Solo5's `ehdr_is_valid`) and that the program
    /// header table lies in `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let header = bytes.get(..ehdr::SIZE).ok_or(ElfError::Truncated {
            what: "the ELF header",
        })?;
        if header[ehdr::MAGIC] != *b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        let field = |name, value: u64, expected: u64, text| {
            if value == expected {
                Ok(())
            } else {
                Err(ElfError::Unsupported {
                    field: name,
                    value,
                    expected: text,
                })
            }
        };
        let h16 = |at| u16_at(header, at).map_or(0, u64::from);
        field("EI_CLASS", header[ehdr::CLASS].into(), 2, "2 (ELFCLASS64)")?;
        field("EI_DATA", header[ehdr::DATA].into(), 1, "1 (little endian)")?;
        field(
            "e_version",
            u32_at(header, ehdr::VERSION).map_or(0, u64::from),
            1,
            "1 (EV_CURRENT)",
        )?;
        field("e_ehsize", h16(ehdr::EHSIZE), 64, "64")?;
        field("e_phentsize", h16(ehdr::PHENTSIZE), 56, "56")?;
        field("e_type", h16(ehdr::TYPE), ET_EXEC.into(), "2 (ET_EXEC)")?;
        field(
            "e_machine",
            h16(ehdr::MACHINE),
            EM_X86_64.into(),
            "62 (x86_64)",
        )?;
        let phnum = h16(ehdr::PHNUM) as usize;
        if phnum == 0 {
            return Err(ElfError::Unsupported {
                field: "e_phnum",
                value: 0,
                expected: "at least 1",
            });
        }
        let phoff = u64_at(header, ehdr::PHOFF).unwrap_or(u64::MAX);
        let table_end = phoff
            .checked_add((phnum * phdr::SIZE) as u64)
            .filter(|&end| end <= bytes.len() as u64)
            .ok_or(ElfError::Truncated {
                what: "the program header table",
            })?;
        debug_assert!(table_end <= bytes.len() as u64);
        Ok(Elf {
            bytes,
            entry: u64_at(header, ehdr::ENTRY).unwrap_or(0),
            phoff: phoff as usize,
            phnum,
        })
    }

    /// `e_entry`.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Program header `index` (None past the table).
    pub fn program_header(&self, index: usize) -> Option<ProgramHeader> {
        if index >= self.phnum {
            return None;
        }
        let at = self.phoff + index * phdr::SIZE;
        let raw = self.bytes.get(at..at + phdr::SIZE)?;
        Some(ProgramHeader {
            index,
            p_type: u32_at(raw, phdr::TYPE)?,
            flags: u32_at(raw, phdr::FLAGS)?,
            offset: u64_at(raw, phdr::OFFSET)?,
            vaddr: u64_at(raw, phdr::VADDR)?,
            filesz: u64_at(raw, phdr::FILESZ)?,
            memsz: u64_at(raw, phdr::MEMSZ)?,
            align: u64_at(raw, phdr::ALIGN)?,
        })
    }

    /// Every program header, in file order.
    pub fn program_headers(&self) -> impl Iterator<Item = ProgramHeader> + '_ {
        (0..self.phnum).filter_map(|i| self.program_header(i))
    }

    /// The file bytes `[offset, offset+len)`, if they exist.
    pub fn file_bytes(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let end = offset.checked_add(len)?;
        self.bytes
            .get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
    }

    /// The payload of the first note owned by `owner` (with its NUL) of
    /// `note_type`, each such note alone at the start of its own `PT_NOTE`
    /// (Solo5's rule). `align` is the payload's alignment (the payload
    /// starts at the header rounded up to it), `max` the largest `n_descsz`.
    pub fn find_note(
        &self,
        owner: &[u8],
        note_type: u32,
        align: u64,
        max: u64,
    ) -> Result<Option<&'a [u8]>, ElfError> {
        // namesz, descsz, type, then the owner padded to 4 bytes.
        let header_len = 12 + (owner.len() as u64).next_multiple_of(4);
        for ph in self.program_headers().filter(|ph| ph.p_type == PT_NOTE) {
            let bad = |problem| ElfError::BadNote {
                index: ph.index,
                problem,
            };
            if ph.filesz < 12 {
                return Err(bad("shorter than a note header"));
            }
            if ph.filesz < header_len {
                continue;
            }
            let head = self
                .file_bytes(ph.offset, header_len)
                .ok_or(ElfError::Truncated {
                    what: "a note segment",
                })?;
            let (namesz, descsz, n_type) = (u32_at(head, 0), u32_at(head, 4), u32_at(head, 8));
            let name = head.get(12..12 + owner.len());
            if namesz != Some(owner.len() as u32)
                || name != Some(owner)
                || n_type != Some(note_type)
            {
                continue;
            }
            let descsz = u64::from(descsz.unwrap_or(0));
            if descsz < 1 || descsz > max {
                return Err(bad("descriptor size is out of range"));
            }
            if ph.filesz < header_len + descsz {
                return Err(bad("descriptor does not fit in the segment"));
            }
            let payload_at = header_len.next_multiple_of(align.max(1));
            let pad = payload_at - header_len;
            if descsz <= pad {
                return Err(bad("descriptor is smaller than its alignment padding"));
            }
            let payload = self
                .file_bytes(ph.offset + payload_at, descsz - pad)
                .ok_or(ElfError::Truncated { what: "a note" })?;
            return Ok(Some(payload));
        }
        Ok(None)
    }
}

/// A loadable segment that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The program header.
    pub header: ProgramHeader,
    /// Page-aligned start of the memory it occupies.
    pub start: u64,
    /// Page-aligned end.
    pub end: u64,
    /// What the image asks for.
    pub protection: Protection,
}

/// How the host side maps a segment's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostProtection {
    /// Exactly as asked (spt: the guest runs in the tender's address space).
    Exact,
    /// Executable becomes readable (hvt: the host never executes guest code).
    ExecAsRead,
    /// As `ExecAsRead` for the tender's checked accessors (no hypercall
    /// may write into the text or read-only data), while the host mapping
    /// stays read-write: hvt with a sealed image (LMN1 `NX_DATA`), whose
    /// page tables give the guest the same protections. KVM's shadow MMU
    /// (KVM-PVM, or KVM without EPT) then maps up to 8 neighbouring pages
    /// of text at each guest page fault, as it only does for pages the
    /// host maps writable: hello starts with 13 page faults instead of 27,
    /// each a VM exit of about 20 us nested.
    Checked,
}

/// An image checked against a memory size: what to load where.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    /// The ELF view.
    pub elf: Elf<'a>,
    /// Entry point.
    pub entry: u64,
    /// Highest page-aligned end of the loaded segments.
    pub kernel_end: u64,
    /// The non-empty loadable segments, ascending.
    pub segments: Vec<Segment>,
}

impl<'a> Image<'a> {
    /// Applies the Solo5 rules (ABI.md 2.1-2.2) for guest memory of
    /// `mem_size` bytes.
    pub fn check(elf: Elf<'a>, mem_size: u64) -> Result<Self, ElfError> {
        if elf.entry < GUEST_MIN_BASE || elf.entry >= mem_size {
            return Err(ElfError::EntryOutOfRange {
                entry: elf.entry,
                min: GUEST_MIN_BASE,
                mem_size,
            });
        }
        let mut segments = Vec::new();
        let (mut last_vaddr, mut kernel_end) = (0u64, 0u64);
        for ph in elf.program_headers() {
            if ph.p_type != PT_LOAD || ph.filesz == 0 {
                continue;
            }
            let bad = |problem| ElfError::BadSegment {
                index: ph.index,
                vaddr: ph.vaddr,
                problem,
            };
            let outside = |end| ElfError::OutsideMemory {
                index: ph.index,
                vaddr: ph.vaddr,
                end,
                mem_size,
            };
            if ph.vaddr < GUEST_MIN_BASE {
                return Err(bad("is below 1 MiB; link the image at 0x100000 or above"));
            }
            if ph.vaddr < last_vaddr {
                return Err(bad("is not in ascending address order; relink the image"));
            }
            last_vaddr = ph.vaddr;
            if ph.align == 0 || !ph.align.is_power_of_two() {
                return Err(bad("has an alignment that is not a power of two"));
            }
            let start = ph.vaddr & !(ph.align - 1);
            if start < GUEST_MIN_BASE {
                return Err(bad("starts below 1 MiB once aligned"));
            }
            if start < kernel_end {
                return Err(bad("overlaps the previous segment"));
            }
            if ph.memsz < ph.filesz {
                return Err(bad("is smaller in memory than in the file"));
            }
            let file_end = ph.vaddr.checked_add(ph.filesz).ok_or(outside(u64::MAX))?;
            if ph.vaddr >= mem_size || file_end > mem_size {
                return Err(outside(file_end));
            }
            let end = ph
                .vaddr
                .checked_add(ph.memsz)
                .and_then(|e| e.checked_next_multiple_of(ph.align))
                .ok_or(outside(u64::MAX))?;
            if end > mem_size {
                return Err(outside(end));
            }
            if start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
                return Err(bad(
                    "is not page aligned; link with -z max-page-size=0x1000",
                ));
            }
            if ph.flags & PF_W != 0 && ph.flags & PF_X != 0 {
                return Err(ElfError::WriteExec {
                    index: ph.index,
                    vaddr: ph.vaddr,
                });
            }
            if elf.file_bytes(ph.offset, ph.filesz).is_none() {
                return Err(ElfError::Truncated {
                    what: "a loadable segment",
                });
            }
            kernel_end = end;
            segments.push(Segment {
                header: ph,
                start,
                end,
                protection: Protection {
                    read: ph.flags & PF_R != 0,
                    write: ph.flags & PF_W != 0,
                    exec: ph.flags & PF_X != 0,
                },
            });
        }
        Ok(Image {
            elf,
            entry: elf.entry,
            kernel_end,
            segments,
        })
    }

    /// Copies every segment into `mem` and zeroes its memory-only tail.
    pub fn load(&self, mem: &mut GuestMemory) -> Result<(), ElfError> {
        for segment in &self.segments {
            let ph = segment.header;
            let contents =
                self.elf
                    .file_bytes(ph.offset, ph.filesz)
                    .ok_or(ElfError::Truncated {
                        what: "a loadable segment",
                    })?;
            mem.copy_in(ph.vaddr, contents)?;
            mem.bytes_mut(ph.vaddr + ph.filesz, ph.memsz - ph.filesz)?
                .fill(0);
        }
        Ok(())
    }

    /// Where the image went, without the file's bytes: what a tender keeps
    /// once the image is loaded, so that it can free the file (the size of
    /// the image, per running guest) before the guest runs.
    pub fn placement(&self) -> Placement {
        Placement {
            entry: self.entry,
            kernel_end: self.kernel_end,
            segments: self.segments.clone(),
        }
    }
}

/// A loaded image's entry, end and segments ([`Image::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Entry point.
    pub entry: u64,
    /// Highest page-aligned end of the loaded segments.
    pub kernel_end: u64,
    /// The non-empty loadable segments, ascending.
    pub segments: Vec<Segment>,
}

impl Placement {
    /// Applies each segment's protection to the host mapping.
    pub fn protect(
        &self,
        mem: &mut GuestMemory,
        how: HostProtection,
    ) -> Result<(), crate::mem::MemoryError> {
        for segment in &self.segments {
            let mut protection = segment.protection;
            if how != HostProtection::Exact && protection.exec {
                protection.exec = false;
                protection.read = true;
            }
            if how == HostProtection::Checked {
                mem.protect_checked(segment.start, segment.end, protection)?;
            } else {
                mem.protect(segment.start, segment.end, protection)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "elf_tests.rs"]
mod tests;
