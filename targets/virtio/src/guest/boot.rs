//! From the boot loader to the application and back: the two 32-bit entries
//! (the VMM's PVH entry for `-kernel` boots, Multiboot2 for GRUB on a disk
//! image) that enter long mode on one path, the boot facts each protocol
//! hands over (`hvm_start_info`, the Multiboot2 information), the heap's
//! region, and `start`, which takes the device words out of the command line
//! and hands the rest to `lamina_metal::app::start`. [`VirtioMachine`] is the
//! PC as the shared runtime sees it.

use super::devices::GuestPlatform;
use super::hw;
use super::park::GuestPark;
use super::virtio;
use alloc::rc::Rc;
use core::future::Future;
use lamina_core::args::BootArgs;
use lamina_core::declare::DeviceSet;
use lamina_core::platform::Env;
use lamina_core::runtime::Executor;
use lamina_core::IntoExit;
use lamina_metal::{app, heap, Machine};
/// The page tables map this much, identity, with 2 MiB pages.
pub(super) const MAPPED: u64 = 4 << 30;
/// `hvm_start_info.magic`.
const PVH_MAGIC: u32 = 0x336e_c578;
/// What a Multiboot2 loader puts in %eax.
const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// Longest command line read.
const CMDLINE_MAX: usize = 8192;

/// A PC under a VMM: the serial port, the TSC and the CMOS clock,
/// isa-debug-exit.
pub struct VirtioMachine;

impl Machine for VirtioMachine {
    const TARGET: &'static str = "virtio";
    /// Solo5's abort is 255, which isa-debug-exit cannot carry: the largest
    /// status it can.
    const PANIC_STATUS: i32 = lamina_abi::debug_exit::MAX_STATUS;

    fn console_write(bytes: &[u8]) {
        hw::uart_write(bytes);
    }

    fn monotonic_ns() -> u64 {
        hw::monotonic_ns()
    }

    fn wall_clock_ns() -> u64 {
        hw::rtc_unix_seconds().saturating_mul(1_000_000_000)
    }

    fn exit(status: i32) -> ! {
        hw::exit(status)
    }

    /// `lamina run --trace` gives QEMU an `isa-debugcon` on
    /// [`hw::DEBUGCON`] writing to the recording's file.
    fn trace_sink() -> Option<fn(&[u8])> {
        Some(hw::debugcon_write)
    }
}

lamina_metal::panic_handler!(VirtioMachine);

// Two ways in, one path on:
//
// - The PVH entry (Xen's XEN_ELFNOTE_PHYS32_ENTRY, note type 18, which
//   QEMU's `-kernel`, Firecracker and cloud-hypervisor honour): %ebx = the
//   physical address of hvm_start_info.
// - The Multiboot2 entry (the header's entry address tag; GRUB loads the
//   ELF by its program headers), for disk images (`lamina build --disk`):
//   %eax = the Multiboot2 magic, %ebx = the physical address of the boot
//   information. QEMU's `-kernel` knows only Multiboot 1, so it still takes
//   the PVH note.
//
// Both start in 32-bit protected mode, paging off, flat segments, no usable
// stack. Each entry keeps the info address in %esi, the value of %eax in
// %ebx and its Rust entry in %ebp; the common path switches to the boot
// stack in .bss, identity-maps the first 4 GiB (2 MiB pages,
// read-write-execute until `seal_image`), enables PAE, SSE (OSFXSR, OSXMMEXCPT; EM and
// TS off, MP on) and long mode, loads a 64-bit GDT and calls the Rust entry
// with (info address, %eax at entry). Interrupts are off until the runtime
// turns them on, so the red zone that the prebuilt `core` uses is safe.
core::arch::global_asm!(
    ".pushsection .note.Xen, \"a\", @note",
    ".p2align 2",
    ".long 4",  // namesz: "Xen\0"
    ".long 4",  // descsz
    ".long 18", // XEN_ELFNOTE_PHYS32_ENTRY
    ".asciz \"Xen\"",
    ".p2align 2",
    ".long lamina_pvh_start",
    ".popsection",
    // The Multiboot2 header: within the file's first 32 KiB, 8-aligned
    // (link.ld puts it first in .text). Tags: the entry address, the end.
    ".pushsection .multiboot2, \"a\"",
    ".p2align 3",
    "lamina_multiboot2_header:",
    ".long 0xe85250d6", // magic
    ".long 0",          // architecture: i386 protected mode
    ".long lamina_multiboot2_header_end - lamina_multiboot2_header",
    ".long 0x100000000 - (0xe85250d6 + (lamina_multiboot2_header_end - lamina_multiboot2_header))",
    ".short 3", // entry address tag
    ".short 0",
    ".long 12",
    ".long lamina_multiboot2_start",
    ".p2align 3",
    ".short 0", // end tag
    ".short 0",
    ".long 8",
    "lamina_multiboot2_header_end:",
    ".popsection",
    ".pushsection .text.lamina_pvh_start, \"ax\"",
    ".code32",
    ".global lamina_pvh_start",
    "lamina_pvh_start:",
    "  cli",
    "  cld",
    "  mov esi, ebx",
    "  mov ebx, eax",
    "  mov ebp, offset {pvh_entry}",
    "  jmp .Lcommon",
    ".global lamina_multiboot2_start",
    "lamina_multiboot2_start:",
    "  cli",
    "  cld",
    "  mov esi, ebx",
    "  mov ebx, eax",
    "  mov ebp, offset {multiboot2_entry}",
    ".Lcommon:",
    "  mov esp, offset lamina_stack_top",
    // Zero the six table pages: PML4, PDPT, four page directories.
    "  mov edi, offset lamina_page_tables",
    "  xor eax, eax",
    "  mov ecx, 6 * 1024",
    "  rep stosd",
    "  mov eax, offset lamina_page_tables + 0x1003",
    "  mov dword ptr [lamina_page_tables], eax",
    "  mov edi, offset lamina_page_tables + 0x1000",
    "  mov eax, offset lamina_page_tables + 0x2003",
    "  mov ecx, 4",
    ".Lpdpt:",
    "  mov dword ptr [edi], eax",
    "  add eax, 0x1000",
    "  add edi, 8",
    "  dec ecx",
    "  jnz .Lpdpt",
    "  mov edi, offset lamina_page_tables + 0x2000",
    "  mov eax, 0x83", // present, writable, 2 MiB
    "  mov ecx, 2048",
    ".Lpd:",
    "  mov dword ptr [edi], eax",
    "  add eax, 0x200000",
    "  add edi, 8",
    "  dec ecx",
    "  jnz .Lpd",
    "  mov eax, 0x620", // PAE | OSFXSR | OSXMMEXCPT
    "  mov cr4, eax",
    "  mov eax, offset lamina_page_tables",
    "  mov cr3, eax",
    "  mov ecx, 0xc0000080", // EFER
    "  rdmsr",
    "  or eax, 0x100", // LME
    "  wrmsr",
    "  mov eax, cr0",
    "  and eax, 0xfffffff3", // EM, TS off
    "  or eax, 0x80000003",  // PG | MP | PE
    "  mov cr0, eax",
    "  lgdt [lamina_gdt_ptr]",
    "  mov eax, 0x08",
    "  push eax",
    "  mov eax, offset .Llong",
    "  push eax",
    "  retf",
    ".code64",
    ".Llong:",
    "  mov eax, 0x10",
    "  mov ds, ax",
    "  mov es, ax",
    "  mov ss, ax",
    "  mov fs, ax",
    "  mov gs, ax",
    "  lea rsp, [rip + lamina_stack_top]",
    "  fninit",
    // The upper halves of the registers are undefined after the switch:
    // 32-bit moves clear them.
    "  mov edi, esi",
    "  mov esi, ebx",
    "  mov eax, ebp",
    "  call rax",
    "  ud2",
    ".popsection",
    ".pushsection .rodata.lamina_gdt, \"a\"",
    ".p2align 4",
    "lamina_gdt:",
    ".quad 0",
    ".quad 0x00af9b000000ffff", // 0x08: 64-bit code, accessed
    ".quad 0x00cf93000000ffff", // 0x10: data, accessed
    "lamina_gdt_ptr:",
    ".word 23",
    ".long lamina_gdt",
    ".popsection",
    ".pushsection .bss.lamina_boot, \"aw\", @nobits",
    ".p2align 12",
    "lamina_page_tables:",
    ".skip 6 * 4096",
    "lamina_stack:",
    ".skip 512 * 1024",
    "lamina_stack_top:",
    ".popsection",
    pvh_entry = sym pvh_entry,
    multiboot2_entry = sym multiboot2_entry,
);

/// `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`), version 1.
#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// E820 type of usable RAM.
const RAM: u32 = 1;

/// What the runtime hands the application's glue at boot.
pub struct Boot {
    cmdline: &'static str,
}

unsafe extern "Rust" {
    /// Defined by `lamina::main!` in the application: calls [`start`] with
    /// the application's `main`.
    fn __lamina_guest_main(boot: Boot) -> i32;
}

unsafe extern "C" {
    /// End of the image, from `link.ld`.
    static _end: u8;
}

/// What the boot protocol tells the runtime: the same facts whichever way
/// the image was started.
struct BootFacts {
    /// The RAM the heap may take: the largest free region above the image
    /// and inside the identity map, as (start, end).
    heap: (u64, u64),
    /// The boot arguments.
    cmdline: &'static str,
}

/// Rust entry from the PVH entry, in long mode.
extern "C" fn pvh_entry(start_info: u32, _eax: u32) -> ! {
    hw::uart_init();
    // SAFETY: the VMM passes the physical address of its hvm_start_info,
    // identity-mapped; it is only read.
    let info = unsafe { core::ptr::read_unaligned(start_info as usize as *const StartInfo) };
    if info.magic != PVH_MAGIC {
        fail("not started through PVH (bad hvm_start_info magic)");
    }
    if info.version < 1 || info.memmap_entries == 0 {
        fail("the VMM passed no memory map (hvm_start_info version 0)");
    }
    let ram = (0..info.memmap_entries as usize).map(|i| {
        // SAFETY: the memory map has `memmap_entries` entries at this address.
        let e = unsafe {
            core::ptr::read_unaligned((info.memmap_paddr as usize as *const MemmapEntry).add(i))
        };
        (e.addr, e.size, e.kind)
    });
    let heap = largest_free(ram);
    // SAFETY: the VMM keeps the NUL-terminated command line at this address
    // (outside the memory handed to the heap: it is below the image or in
    // memory the map does not report as RAM) for the guest's lifetime.
    let cmdline = unsafe { read_cmdline(info.cmdline_paddr) };
    boot(BootFacts { heap, cmdline })
}

/// Multiboot2 boot information tags read here.
const MB2_TAG_END: u32 = 0;
const MB2_TAG_CMDLINE: u32 = 1;
const MB2_TAG_MMAP: u32 = 6;

/// The Multiboot2 command line, copied out of the boot information, which
/// lies in RAM the memory map reports free and the heap may take.
static mut MB2_CMDLINE: [u8; CMDLINE_MAX] = [0; CMDLINE_MAX];

/// Rust entry from the Multiboot2 entry, in long mode: reads the memory map
/// and the command line out of the boot information's tags.
extern "C" fn multiboot2_entry(mbi: u32, eax: u32) -> ! {
    hw::uart_init();
    if eax != MULTIBOOT2_MAGIC {
        fail("not started by a Multiboot2 loader (bad magic in %eax)");
    }
    let read = |addr: u64| -> u32 {
        // SAFETY: `addr` is inside the boot information, which the loader
        // placed in identity-mapped RAM; it is only read, and only before
        // the heap may reuse that RAM.
        unsafe { core::ptr::read_unaligned(addr as usize as *const u32) }
    };
    let start = u64::from(mbi);
    let end = start + u64::from(read(start));
    let mut tag = start + 8;
    let (mut mmap, mut cmdline) = (None, None);
    while tag + 8 <= end {
        let (kind, size) = (read(tag), u64::from(read(tag + 4)));
        match kind {
            MB2_TAG_END => break,
            MB2_TAG_CMDLINE => cmdline = Some(tag + 8),
            MB2_TAG_MMAP => mmap = Some((tag, size)),
            _ => {}
        }
        tag += size.max(8).next_multiple_of(8);
    }
    let Some((mmap, size)) = mmap else {
        fail("the boot loader passed no memory map (no Multiboot2 mmap tag)");
    };
    let entry_size = u64::from(read(mmap + 8)).max(24);
    let ram = (0..(size.saturating_sub(16) / entry_size)).map(|i| {
        let e = mmap + 16 + i * entry_size;
        let addr = u64::from(read(e)) | u64::from(read(e + 4)) << 32;
        let len = u64::from(read(e + 8)) | u64::from(read(e + 12)) << 32;
        (addr, len, read(e + 16))
    });
    let heap = largest_free(ram);
    let cmdline = match cmdline {
        // SAFETY: the tag holds a NUL-terminated string; this is the only
        // call.
        Some(src) => unsafe { keep_multiboot2_cmdline(src) },
        None => "",
    };
    boot(BootFacts { heap, cmdline })
}

/// Copies the command line at `src` into [`MB2_CMDLINE`] (at most
/// `CMDLINE_MAX - 1` bytes, so that it stays NUL-terminated) and returns it.
///
/// # Safety
/// `src` points to a NUL-terminated string; called once, before anything
/// else uses `MB2_CMDLINE`.
unsafe fn keep_multiboot2_cmdline(src: u64) -> &'static str {
    let src = src as usize as *const u8;
    let copy = (&raw mut MB2_CMDLINE).cast::<u8>();
    let mut len = 0;
    // SAFETY: bytes of `src` up to its NUL are readable (the contract);
    // `len` stays inside the buffer, which nothing else uses.
    unsafe {
        while len < CMDLINE_MAX - 1 && *src.add(len) != 0 {
            copy.add(len).write(*src.add(len));
            len += 1;
        }
        read_cmdline(copy as u64)
    }
}

/// The largest RAM region above the image and inside the identity map, of
/// (address, size, E820 type) entries; fails if it cannot hold a heap.
fn largest_free(map: impl Iterator<Item = (u64, u64, u32)>) -> (u64, u64) {
    let image_end = (&raw const _end) as u64;
    let mut best = (0u64, 0u64);
    for (addr, size, kind) in map {
        if kind != RAM {
            continue;
        }
        let start = addr.max(image_end).next_multiple_of(4096);
        let end = addr.saturating_add(size).min(MAPPED) & !4095;
        if end > start && end - start > best.1 - best.0 {
            best = (start, end);
        }
    }
    if best.1 - best.0 < heap::MIN_SIZE {
        fail("not enough guest memory for a heap: give the VM more (-m)");
    }
    best
}

/// Common to both entries: the heap, the clock, then the application.
fn boot(facts: BootFacts) -> ! {
    super::irq::install_idt();
    seal_image();
    let (start, end) = facts.heap;
    // SAFETY: the region is RAM the memory map reports free, above the image
    // (whose .bss holds the stack and page tables) and past everything the
    // boot protocol handed over that is still used (the PVH command line,
    // the copied Multiboot2 one); nothing else uses it and this runs once,
    // before any allocation.
    unsafe { heap::init(start, end, false) };
    if !hw::clock_init() {
        fail("cannot calibrate the TSC: no PIT and no CPUID frequency leaves");
    }
    // SAFETY: the application defines this symbol through `lamina::main!`.
    let status = unsafe {
        __lamina_guest_main(Boot {
            cmdline: facts.cmdline,
        })
    };
    hw::exit(status)
}

/// Page-table entry bits.
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const NO_EXECUTE: u64 = 1 << 63;
/// 2 MiB regions of the image that get 4 KiB pages: the image must end
/// below `SEALED_REGIONS * 2 MiB` (link.ld checks it).
const SEALED_REGIONS: usize = 8;
const REGION: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// One page of page-table entries.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The 4 KiB page tables of the regions that hold the image.
static mut IMAGE_TABLES: [Table; SEALED_REGIONS] = [const { Table([0; 512]) }; SEALED_REGIONS];

unsafe extern "C" {
    /// The boot path's tables (PML4, PDPT, four page directories).
    static mut lamina_page_tables: [Table; 6];
    /// Section bounds, from `link.ld` (page-aligned).
    static __lamina_text_start: u8;
    static __lamina_rodata_start: u8;
    static __lamina_data_start: u8;
}

/// Seals the image: text read + execute, read-only data read-only,
/// data and .bss (the stack, these tables) read-write and not executable,
/// and everything else in the identity map read-write and not executable.
/// The boot path mapped all of it read-write-execute with 2 MiB pages; the
/// regions that hold the image get 4 KiB pages here. Sets CR0.WP (so that
/// the kernel honours read-only pages) and, where the CPU has it, EFER.NXE
/// (without it there is no no-execute bit and only writes are sealed).
fn seal_image() {
    let text = (&raw const __lamina_text_start) as u64;
    let rodata = (&raw const __lamina_rodata_start) as u64;
    let data = (&raw const __lamina_data_start) as u64;
    let end = (&raw const _end) as u64;
    let nx_supported = core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
        && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 20) != 0;
    let nx = if nx_supported { NO_EXECUTE } else { 0 };
    let flags = |addr: u64| match addr {
        a if (text..rodata).contains(&a) => PRESENT,
        a if (rodata..data).contains(&a) => PRESENT | nx,
        _ => PRESENT | WRITABLE | nx,
    };
    let regions = end.div_ceil(REGION) as usize;
    if regions > SEALED_REGIONS {
        fail("the image is too large to seal (see SEALED_REGIONS)");
    }
    // SAFETY: this runs once, on one CPU, before anything else uses the
    // tables. The new entries map every address to itself as before, so the
    // code, the stack and the boot information stay where they are; only
    // their permissions change, and nothing written later lies in text or
    // read-only data. The TLB is flushed by reloading CR3 at the end.
    unsafe {
        if nx_supported {
            let (lo, hi): (u32, u32);
            core::arch::asm!("rdmsr", in("ecx") 0xc000_0080u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
            core::arch::asm!("wrmsr", in("ecx") 0xc000_0080u32, in("eax") lo | (1 << 11), in("edx") hi, options(nomem, nostack));
        }
        let tables = core::slice::from_raw_parts_mut(
            (&raw mut IMAGE_TABLES).cast::<Table>(),
            SEALED_REGIONS,
        );
        let directories = core::slice::from_raw_parts_mut(
            (&raw mut lamina_page_tables).cast::<Table>().add(2),
            4,
        );
        for (i, entry) in directories
            .iter_mut()
            .flat_map(|d| d.0.iter_mut())
            .enumerate()
        {
            let base = i as u64 * REGION;
            if i < regions {
                for (j, pte) in tables[i].0.iter_mut().enumerate() {
                    let addr = base + j as u64 * PAGE;
                    *pte = addr | flags(addr);
                }
                *entry = (&raw const tables[i]) as u64 | PRESENT | WRITABLE;
            } else {
                *entry |= nx;
            }
        }
        core::arch::asm!(
            "mov rax, cr0",
            "or rax, {wp}",
            "mov cr0, rax",
            "mov rax, cr3",
            "mov cr3, rax",
            wp = const 1 << 16,
            out("rax") _,
            options(nostack),
        );
    }
}

/// # Safety
/// `addr` is 0 or points to a NUL-terminated string that lives forever.
unsafe fn read_cmdline(addr: u64) -> &'static str {
    if addr == 0 {
        return "";
    }
    let p = addr as usize as *const u8;
    let mut len = 0;
    // SAFETY: per the contract, bytes up to the NUL are readable.
    while len < CMDLINE_MAX && unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes were just read.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// Reports a boot failure and stops with status 1.
fn fail(why: &str) -> ! {
    lamina_metal::fail::<VirtioMachine>(why)
}

/// Boots an application: takes the device words out of the command line
/// (see [`crate::cmdline`]), parses the rest into its arguments, installs
/// the logger, brings up the virtio devices (named by the command line, or
/// in order by the application's declaration `D`), acquires the devices it
/// declares and runs `main` to completion. Returns the exit status: 0 on
/// success, 1 when `main` fails, 2 for a bad command line or a missing
/// device.
///
/// Called by `lamina::main!`; applications do not call it themselves.
pub fn start<A, D, F, Fut>(boot: Boot, main: F) -> i32
where
    A: BootArgs,
    D: DeviceSet<GuestPlatform>,
    F: FnOnce(Env<GuestPlatform>, D, A) -> Fut,
    Fut: Future,
    Fut::Output: IntoExit,
{
    let console: app::ConsoleWrite = VirtioMachine::console_write;
    let mut words = match app::words(boot.cmdline, console) {
        Ok(words) => words,
        Err(status) => return status,
    };
    let device_words = match crate::cmdline::take_device_words(&mut words) {
        Ok(found) => found,
        Err(e) => {
            console(alloc::format!("unikernel: {e}\n").as_bytes());
            return 2;
        }
    };
    // The devices are found once the logger is up, so that what they
    // report is seen; those the command line does not name take the names
    // the application declares, in order.
    let platform = |net_args| {
        let devices = virtio::discover(&device_words, D::DECLARED, MAPPED);
        let park = Rc::new(GuestPark::new());
        park.attach(&devices.all);
        let executor = Executor::new(park);
        let platform = GuestPlatform::new(devices, executor.handle(), net_args);
        (executor, platform)
    };
    app::start::<VirtioMachine, A, D, _, _, _>(&words, None, platform, main)
}
