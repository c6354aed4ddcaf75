//! ELF core files of a crashed guest, as `gdb IMAGE CORE` reads them:
//! `ET_CORE`, one `PT_NOTE` holding an `NT_PRSTATUS` note (the signal and
//! the registers, in the layout of x86-64 Linux's `struct elf_prstatus`
//! and `user_regs_struct`), then one `PT_LOAD` per guest memory range at
//! its guest addresses. Pages that are all zero are left as holes in the
//! file (seeked over), so a mostly untouched 512 MiB guest costs little
//! disk, and gdb still reads them as the zeros they are.
//!
//! The registers and the memory come from the guest; none of it is
//! interpreted here, only copied, so nothing the guest wrote can make the
//! writer fail other than by an I/O error.

use std::io::{Seek, SeekFrom, Write};

/// `user_regs_struct` of x86-64 Linux: the register order gdb expects in
/// `NT_PRSTATUS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl UserRegs {
    /// The 27 registers in `user_regs_struct` order.
    pub fn words(&self) -> [u64; 27] {
        [
            self.r15,
            self.r14,
            self.r13,
            self.r12,
            self.rbp,
            self.rbx,
            self.r11,
            self.r10,
            self.r9,
            self.r8,
            self.rax,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.orig_rax,
            self.rip,
            self.cs,
            self.eflags,
            self.rsp,
            self.ss,
            self.fs_base,
            self.gs_base,
            self.ds,
            self.es,
            self.fs,
            self.gs,
        ]
    }
}

/// A range of guest memory to dump: `[start, start + len)`, guest addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub start: u64,
    /// Length in bytes (a multiple of [`PAGE`] is best; any is accepted).
    pub len: u64,
}

/// The unit of memory copied, and of the holes left for zero pages.
pub const PAGE: u64 = 4096;

const ELF_HEADER: u64 = 64;
const PROGRAM_HEADER: u64 = 56;
/// `sizeof(struct elf_prstatus)` on x86-64.
const PRSTATUS_SIZE: usize = 336;
/// Where `pr_reg` starts in it.
const PRSTATUS_REGS: usize = 112;
const NT_PRSTATUS: u32 = 1;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// PF_R | PF_W | PF_X.
const PF_RWX: u32 = 7;

/// Size of the `NT_PRSTATUS` note: header, "CORE" padded, descriptor.
const NOTE_SIZE: usize = 20 + PRSTATUS_SIZE;

/// The `NT_PRSTATUS` note: header, "CORE" and the `elf_prstatus`.
fn prstatus_note(regs: &UserRegs, signal: i32, pid: i32) -> [u8; NOTE_SIZE] {
    let mut note = [0u8; NOTE_SIZE];
    note[0..4].copy_from_slice(&5u32.to_le_bytes()); // namesz: "CORE\0"
    note[4..8].copy_from_slice(&(PRSTATUS_SIZE as u32).to_le_bytes());
    note[8..12].copy_from_slice(&NT_PRSTATUS.to_le_bytes());
    note[12..16].copy_from_slice(b"CORE"); // and NULs to a multiple of 4
    let desc = &mut note[20..];
    // pr_info.si_signo, then pr_cursig (a short at 12).
    desc[0..4].copy_from_slice(&signal.to_le_bytes());
    desc[12..14].copy_from_slice(&(signal as u16).to_le_bytes());
    // pr_pid at 32.
    desc[32..36].copy_from_slice(&pid.to_le_bytes());
    for (i, word) in regs.words().iter().enumerate() {
        let at = PRSTATUS_REGS + 8 * i;
        desc[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
    note
}

fn program_header(p_type: u32, flags: u32, offset: u64, vaddr: u64, size: u64) -> [u8; 56] {
    let mut header = [0u8; 56];
    let (filesz, memsz, align) = if p_type == PT_LOAD {
        (size, size, PAGE)
    } else {
        (size, 0, 4)
    };
    header[0..4].copy_from_slice(&p_type.to_le_bytes());
    header[4..8].copy_from_slice(&flags.to_le_bytes());
    header[8..16].copy_from_slice(&offset.to_le_bytes());
    header[16..24].copy_from_slice(&vaddr.to_le_bytes());
    // p_paddr stays 0.
    header[32..40].copy_from_slice(&filesz.to_le_bytes());
    header[40..48].copy_from_slice(&memsz.to_le_bytes());
    header[48..56].copy_from_slice(&align.to_le_bytes());
    header
}

fn elf_header(phnum: u16) -> [u8; 64] {
    let mut header = [0u8; 64];
    header[0..4].copy_from_slice(b"\x7fELF");
    header[4] = 2; // 64-bit
    header[5] = 1; // little-endian
    header[6] = 1; // version
    header[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
    header[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header[32..40].copy_from_slice(&ELF_HEADER.to_le_bytes()); // e_phoff
    header[52..54].copy_from_slice(&(ELF_HEADER as u16).to_le_bytes());
    header[54..56].copy_from_slice(&(PROGRAM_HEADER as u16).to_le_bytes());
    header[56..58].copy_from_slice(&phnum.to_le_bytes());
    header
}

/// Writes the core file to `out` (at its start): `regs` and `signal` (the
/// one a process crashing so would have had: SIGSEGV, SIGILL, SIGABRT) in
/// the note, then each of `ranges`, whose bytes `read(address, buf)`
/// copies out of guest memory. A page `read` fails on is dumped as zeros.
/// Allocates nothing (lamina-spt writes from a signal handler); `out`'s
/// own calls are all it makes.
pub fn write<W: Write + Seek>(
    out: &mut W,
    regs: &UserRegs,
    signal: i32,
    pid: i32,
    ranges: &[Range],
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> std::io::Result<()> {
    let too_many = || std::io::Error::other("too many memory ranges for one core file");
    let phnum = u16::try_from(ranges.len() + 1).map_err(|_| too_many())?;
    let note = prstatus_note(regs, signal, pid);
    let note_offset = ELF_HEADER + PROGRAM_HEADER * u64::from(phnum);
    let first_load = (note_offset + NOTE_SIZE as u64).next_multiple_of(PAGE);
    // Where each range's bytes go: one after the other, page aligned.
    let offset_after = |offset: u64, range: &Range| {
        range
            .len
            .checked_next_multiple_of(PAGE)
            .and_then(|len| offset.checked_add(len))
            .ok_or_else(too_many)
    };
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&elf_header(phnum))?;
    out.write_all(&program_header(
        PT_NOTE,
        0,
        note_offset,
        0,
        NOTE_SIZE as u64,
    ))?;
    let mut offset = first_load;
    for range in ranges {
        out.write_all(&program_header(
            PT_LOAD,
            PF_RWX,
            offset,
            range.start,
            range.len,
        ))?;
        offset = offset_after(offset, range)?;
    }
    out.write_all(&note)?;
    let mut page = [0u8; PAGE as usize];
    // The end of the file as it should be, and as written so far.
    let (mut end, mut written_end) = (note_offset + NOTE_SIZE as u64, 0);
    let mut start = first_load;
    for range in ranges {
        let mut done = 0;
        while done < range.len {
            let len = (range.len - done).min(PAGE) as usize;
            let buf = &mut page[..len];
            if !read(range.start.wrapping_add(done), buf) {
                buf.fill(0);
            }
            if buf.iter().any(|&b| b != 0) {
                out.seek(SeekFrom::Start(start + done))?;
                out.write_all(buf)?;
                written_end = start + done + len as u64;
            }
            done += len as u64;
        }
        end = end.max(start + range.len);
        start = offset_after(start, range)?;
    }
    // A file that ends in a hole still has the hole's length: its last
    // byte, a zero, is written.
    if written_end < end {
        out.seek(SeekFrom::Start(end - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn a_core_has_the_registers_and_memory_where_gdb_looks() {
        let regs = UserRegs {
            rip: 0x10_2a4c,
            rsp: 0x1ff_ff00,
            rbp: 0x1ff_ff10,
            gs: 0x2b,
            ..Default::default()
        };
        // Guest memory: page 0x100000 holds a pattern, 0x101000 is zero.
        let memory = |address: u64, buf: &mut [u8]| {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = address + i as u64;
                *b = if a < 0x10_1000 { (a % 251) as u8 } else { 0 };
            }
            true
        };
        let ranges = [Range {
            start: 0x10_0000,
            len: 0x2000,
        }];
        let mut out = Cursor::new(Vec::new());
        write(&mut out, &regs, 11, 42, &ranges, memory).unwrap();
        let core = out.into_inner();
        assert_eq!(&core[0..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([core[16], core[17]]), ET_CORE);
        assert_eq!(u16::from_le_bytes([core[56], core[57]]), 2, "note + load");
        // The note: its offset and the registers in it.
        let note_header = 64;
        let note_offset = u64_at(&core, note_header + 8) as usize;
        assert_eq!(&core[note_offset + 12..note_offset + 16], b"CORE");
        let desc = note_offset + 20;
        assert_eq!(&core[desc..desc + 4], &11i32.to_le_bytes());
        assert_eq!(&core[desc + 32..desc + 36], &42i32.to_le_bytes());
        assert_eq!(u64_at(&core, desc + PRSTATUS_REGS + 16 * 8), 0x10_2a4c);
        assert_eq!(u64_at(&core, desc + PRSTATUS_REGS + 19 * 8), 0x1ff_ff00);
        assert_eq!(u64_at(&core, desc + PRSTATUS_REGS + 26 * 8), 0x2b);
        // The load: at the guest address, its bytes at its offset.
        let load = 64 + 56;
        assert_eq!(u64_at(&core, load + 16), 0x10_0000);
        let offset = u64_at(&core, load + 8) as usize;
        assert_eq!(offset % PAGE as usize, 0);
        assert_eq!(core[offset + 7], (0x10_0007u64 % 251) as u8);
        assert_eq!(core.len(), offset + 0x2000, "the zero page is there");
        assert!(core[offset + 0x1000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn unreadable_memory_is_zeros_not_an_error() {
        let mut out = Cursor::new(Vec::new());
        let ranges = [Range {
            start: u64::MAX - 0xfff,
            len: 0x1000,
        }];
        write(&mut out, &UserRegs::default(), 6, 1, &ranges, |_, _| false).unwrap();
        let core = out.into_inner();
        let offset = u64_at(&core, 64 + 56 + 8) as usize;
        assert_eq!(core.len(), offset + 0x1000);
        assert!(core[offset..].iter().all(|&b| b == 0));
    }
}
