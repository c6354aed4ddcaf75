//! The guest's low memory and CPU state at entry, in two flavours:
//!
//! - [`CpuMode::Solo5`]: the ordinary Solo5 hvt layout (ABI.md 4.4): ring 0,
//!   CS = 0x08, supervisor page tables. Any Solo5 image runs so on a VMX
//!   host; on KVM-PVM it runs in KVM's instruction emulator (slow, no SSE).
//! - [`CpuMode::PvmNative`]: for images whose LMN1 note promises `ANY_CPL`
//!   on a KVM-PVM host (/work/shared/PVM.md): user pages at every level,
//!   CS = 0x33 / SS = 0x2b at DPL 3, so the guest runs natively.
//!
//! Independently, a *sealed* layout (LMN1 `NX_DATA`) gives the guest page
//! tables the image's own protections: text read-only and executable,
//! rodata read-only, everything else no-execute.
//!
//! Guest-physical low memory (identity mapped, GPA = GVA):
//!
//! | GPA | what | guest mapping |
//! |-----|------|---------------|
//! | 0x1000 | PML4 | not present |
//! | 0x2000 | GDT, the tender's IDT and its `hlt` stubs ([`crate::fault`]) | read-only, executable |
//! | 0x3000 | PDPT | not present |
//! | 0x4000-0x7fff | 4 PDs (one per GiB) | not present |
//! | 0x8000-0xffff | first page tables (4 KiB pages) | not present |
//! | 0x10000 | boot info, manifest, command line | read-only |
//! | up to 0x100000 | more page tables | not present |
//! | 0x100000-image end | the image, 4 KiB pages | per segment |
//! | beyond | RAM, 2 MiB pages | read-write |

use lamina_tender::elf::Placement;
use lamina_tender::mem::{GuestFault, GuestMemory, Protection};
use thiserror::Error;

/// GPA of the PML4 (CR3). Solo5 puts it at 0x2000, but on KVM-PVM a CR3
/// of 0x2000 leaves the guest in KVM's instruction emulator (no SSE) even
/// in native mode, while 0x1000 runs natively (found by experiment, with
/// every other vCPU register and MSR equal). Guests never look here.
pub const PML4: u64 = 0x1000;
/// GPA of the GDT.
pub const GDT: u64 = 0x2000;
const PDPT: u64 = 0x3000;
const PD_BASE: u64 = 0x4000;
const PAGE: u64 = 0x1000;
const HUGE: u64 = 2 << 20;
/// Page-table frames: 0x8000-0xffff, then after the boot area up to 1 MiB.
const FIRST_PT_FRAMES: std::ops::Range<u64> = 0x8000..0x10000;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const PS: u64 = 1 << 7;
/// What every present entry carries besides its rights: accessed and
/// dirty. No guest looks at them, but a shadow MMU (KVM-PVM's, or KVM's
/// without EPT) does: at a guest page fault it maps up to 8 neighbouring
/// entries too, only those whose accessed bit is set (with
/// `HostProtection::Checked`, see guest.rs), and it maps a clean
/// writable page read-only until a write faults again to set its dirty
/// bit. Each fault is a VM exit (about 20 us nested).
const TOUCHED: u64 = ACCESSED | DIRTY;
const NX: u64 = 1 << 63;

/// GDT entries: null, ring-0 code and data (Solo5's 0x08/0x10), two
/// unused, then ring-3 data and code at the indices Linux (and so KVM-PVM)
/// uses for user mode: 0x2b and 0x33.
const GDT_ENTRIES: [u64; 7] = [
    0,
    0x00af_9900_0000_ffff, // 0x08: 64-bit code, DPL 0
    0x00cf_9300_0000_ffff, // 0x10: data, DPL 0
    0,
    0,
    0x00cf_f300_0000_ffff, // 0x2b: data, DPL 3
    0x00af_fb00_0000_ffff, // 0x33: 64-bit code, DPL 3
];
/// GDTR limit.
pub const GDT_LIMIT: u16 = (GDT_ENTRIES.len() * 8 - 1) as u16;

/// How the vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// Ring 0, Solo5's selectors and control registers.
    Solo5,
    /// Hardware ring 3 as KVM-PVM's guest kernel: native execution.
    PvmNative,
}

/// Control registers, segments and flags for a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuState {
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// Code selector.
    pub cs: u16,
    /// Data and stack selector.
    pub ds: u16,
    /// Descriptor privilege level of both.
    pub dpl: u8,
    /// RFLAGS at entry.
    pub rflags: u64,
}

impl CpuMode {
    /// The registers this mode starts with; `nx` enables no-execute pages.
    pub fn state(self, nx: bool) -> CpuState {
        const EFER_NXE: u64 = 1 << 11;
        let nxe = if nx { EFER_NXE } else { 0 };
        match self {
            // PE | NE | WP | PG; PAE | OSFXSR | OSXMMEXCPT; LME | LMA.
            CpuMode::Solo5 => CpuState {
                cr0: 0x8001_0021,
                cr4: 0x620,
                efer: 0x500 | nxe,
                cs: 0x08,
                ds: 0x10,
                dpl: 0,
                rflags: 0x2,
            },
            // PE | MP | ET | NE | WP | AM | PG; as above; SCE | LME | LMA | NXE.
            // PVM.md: this is what makes KVM-PVM run the guest natively.
            CpuMode::PvmNative => CpuState {
                cr0: 0x8005_0033,
                cr4: 0x620,
                efer: 0xd01,
                cs: 0x33,
                ds: 0x2b,
                dpl: 3,
                rflags: 0x202,
            },
        }
    }
}

/// Why the page tables could not be built.
#[derive(Debug, Error)]
pub enum LayoutError {
    /// The image is too large for the page-table frames below 1 MiB.
    #[error(
        "the image ends at {kernel_end:#x}: too large to map with 4 KiB pages (at most {max:#x})"
    )]
    ImageTooLarge {
        /// Its end.
        kernel_end: u64,
        /// The limit.
        max: u64,
    },
    /// Writing the tables.
    #[error("cannot write the page tables: {0}")]
    Fault(#[from] GuestFault),
}

/// What the page tables express.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    /// The CPU mode (user pages for PVM-native).
    pub mode: CpuMode,
    /// Whether to apply the image's protections and NX.
    pub sealed: bool,
    /// End of the boot info area at 0x10000 (page aligned).
    pub boot_end: u64,
}

impl Mapping {
    /// Leaf flags for the 4 KiB page at `addr`.
    fn page_flags(&self, addr: u64, image: &Placement) -> u64 {
        let user = if self.mode == CpuMode::PvmNative {
            US
        } else {
            0
        };
        let nx = if self.sealed { NX } else { 0 };
        if addr == crate::fault::PAGE {
            // The exception gates' `hlt` stubs run here.
            return P | user;
        }
        if addr < lamina_abi::hvt::BOOT_INFO_BASE {
            return 0;
        }
        if addr < self.boot_end {
            return P | user | nx; // read-only: the guest cannot change its boot info
        }
        if addr < lamina_abi::GUEST_MIN_BASE {
            return 0; // page tables and unused: not the guest's
        }
        let segment = image
            .segments
            .iter()
            .find(|s| s.start <= addr && addr < s.end);
        match (segment, self.sealed) {
            (Some(s), true) => P | user | rw_nx(s.protection),
            _ => P | RW | user | nx,
        }
    }
}

fn rw_nx(protection: Protection) -> u64 {
    (if protection.write { RW } else { 0 }) | (if protection.exec { 0 } else { NX })
}

/// Writes the GDT and an identity map of `mem` at their GPAs. `boot_end`
/// is where the boot area ends; page tables go after it, below 1 MiB.
pub fn write_tables(
    mem: &mut GuestMemory,
    image: &Placement,
    mapping: Mapping,
) -> Result<(), LayoutError> {
    for (i, entry) in GDT_ENTRIES.iter().enumerate() {
        mem.write(GDT + 8 * i as u64, entry)?;
    }
    crate::fault::write_idt(mem, mapping.mode.state(false).cs)?;
    let table = |user: bool| P | RW | TOUCHED | if user { US } else { 0 };
    let user = mapping.mode == CpuMode::PvmNative;
    mem.write(PML4, &(PDPT | table(user)))?;
    let mem_size = mem.end();
    let huge_pages = mem_size.div_ceil(HUGE);
    for gib in 0..huge_pages.div_ceil(512) {
        mem.write(PDPT + 8 * gib, &((PD_BASE + PAGE * gib) | table(user)))?;
    }
    // 4 KiB pages up to the end of the image, from these frames.
    let frames: Vec<u64> = FIRST_PT_FRAMES
        .step_by(PAGE as usize)
        .chain((mapping.boot_end..lamina_abi::GUEST_MIN_BASE).step_by(PAGE as usize))
        .collect();
    let small = image
        .kernel_end
        .max(lamina_abi::GUEST_MIN_BASE)
        .div_ceil(HUGE);
    if small as usize > frames.len() {
        return Err(LayoutError::ImageTooLarge {
            kernel_end: image.kernel_end,
            max: frames.len() as u64 * HUGE,
        });
    }
    for i in 0..huge_pages {
        let entry = if i < small {
            let frame = frames[i as usize];
            for page in 0..512 {
                let addr = i * HUGE + page * PAGE;
                let flags = mapping.page_flags(addr, image);
                mem.write(
                    frame + 8 * page,
                    &(if flags == 0 {
                        0
                    } else {
                        addr | flags | TOUCHED
                    }),
                )?;
            }
            frame | table(user)
        } else {
            let nx = if mapping.sealed { NX } else { 0 };
            (i * HUGE) | P | RW | PS | TOUCHED | nx | if user { US } else { 0 }
        };
        mem.write(PD_BASE + 8 * i, &entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_tender::elf::{Elf, Image, PF_R, PF_W, PF_X};
    use lamina_tender::elf_writer::ElfWriter;

    /// Walks the tables like the MMU: the leaf entry for `addr`.
    fn walk(mem: &GuestMemory, addr: u64) -> (u64, u64) {
        let mask = 0x000f_ffff_ffff_f000;
        let pml4: u64 = mem.read(PML4).unwrap();
        let pdpt: u64 = mem.read((pml4 & mask) + 8 * ((addr >> 30) & 511)).unwrap();
        let pd: u64 = mem.read((pdpt & mask) + 8 * ((addr >> 21) & 511)).unwrap();
        let all = pml4 & pdpt & pd;
        if pd & PS != 0 {
            return (pd, all);
        }
        let pt: u64 = mem.read((pd & mask) + 8 * ((addr >> 12) & 511)).unwrap();
        (pt, all & pt)
    }

    fn tables(mode: CpuMode, sealed: bool) -> GuestMemory {
        let bytes = ElfWriter::new(0x100000)
            .load(0x100000, PF_R | PF_X, &[0x90; 16], 0x1000)
            .load(0x101000, PF_R, b"ro", 0x1000)
            .load(0x102000, PF_R | PF_W, b"rw", 0x1000)
            .build();
        let image = Image::check(Elf::parse(&bytes).unwrap(), 8 << 20)
            .unwrap()
            .placement();
        let mut mem = GuestMemory::anywhere(8 << 20).unwrap();
        let mapping = Mapping {
            mode,
            sealed,
            boot_end: 0x14000,
        };
        write_tables(&mut mem, &image, mapping).unwrap();
        mem
    }

    #[test]
    fn sealed_pvm_tables_carry_the_image_protections() {
        let mem = tables(CpuMode::PvmNative, true);
        let (text, all) = walk(&mem, 0x100000);
        assert_eq!(text & (P | RW | NX), P);
        assert_eq!(all & US, US, "U/S at every level");
        assert_eq!(walk(&mem, 0x101000).0 & (RW | NX), NX);
        assert_eq!(walk(&mem, 0x102000).0 & (RW | NX), RW | NX);
        let (ram, all) = walk(&mem, 0x600000);
        assert_eq!(ram & (P | RW | NX | PS), P | RW | NX | PS);
        assert_eq!(all & US, US);
        assert_eq!(walk(&mem, 0x10000).0 & (P | RW), P, "boot info read-only");
        assert_eq!(walk(&mem, 0x14000).0 & P, 0, "page tables hidden");
        assert_eq!(
            walk(&mem, 0x2000).0 & (P | RW | NX),
            P,
            "the fault stubs' page: read-only, executable"
        );
        assert_eq!(walk(&mem, 0x3000).0 & P, 0);
        assert_eq!(walk(&mem, 0x103000).0 & (P | RW | NX), P | RW | NX);
    }

    #[test]
    fn every_present_entry_is_accessed_and_dirty() {
        let mem = tables(CpuMode::PvmNative, true);
        for addr in [0x2000, 0x10000, 0x100000, 0x101000, 0x102000, 0x600000] {
            let (leaf, all) = walk(&mem, addr);
            assert_eq!(leaf & TOUCHED, TOUCHED, "{addr:#x}");
            assert_eq!(all & ACCESSED, ACCESSED, "{addr:#x}: every level");
        }
    }

    #[test]
    fn solo5_tables_are_supervisor_and_executable() {
        let mem = tables(CpuMode::Solo5, false);
        let (text, all) = walk(&mem, 0x100000);
        assert_eq!(text & (P | RW | NX), P | RW);
        assert_eq!(all & US, 0);
        assert_eq!(walk(&mem, 0x600000).0 & (P | RW | NX), P | RW);
        assert_eq!(walk(&mem, 0x0).0 & P, 0);
    }

    #[test]
    fn modes_have_the_documented_registers() {
        let pvm = CpuMode::PvmNative.state(true);
        assert_eq!(
            (pvm.cr0, pvm.cr4, pvm.efer, pvm.cs, pvm.ds),
            (0x8005_0033, 0x620, 0xd01, 0x33, 0x2b)
        );
        let solo5 = CpuMode::Solo5.state(false);
        assert_eq!(
            (solo5.cr0, solo5.efer, solo5.cs, solo5.ds),
            (0x8001_0021, 0x500, 0x08, 0x10)
        );
        assert_eq!(GDT_ENTRIES[6] >> 45 & 3, 3, "0x33 is DPL 3");
        assert_eq!(GDT_ENTRIES[5] >> 45 & 3, 3, "0x2b is DPL 3");
    }
}
