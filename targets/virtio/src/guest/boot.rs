//! From the VMM's PVH entry to the application and back: the 32-bit entry
//! that enters long mode, `hvm_start_info`, the heap, the logger, the panic
//! handler and `start`, which runs the application on the executor.

use super::devices::GuestPlatform;
use super::hw;
use super::park::GuestPark;
use super::virtio;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::future::Future;
use lamina_core::args::common::RuntimeArgs;
use lamina_core::args::{self as boot_args, BootArgs};
use lamina_core::boot;
use lamina_core::platform::Env;
use lamina_core::runtime::Executor;
use lamina_core::IntoExit;

/// Smallest heap worth booting with.
const MIN_HEAP: u64 = 256 * 1024;
/// The page tables map this much, identity, with 2 MiB pages.
pub(super) const MAPPED: u64 = 4 << 30;
/// `hvm_start_info.magic`.
const PVH_MAGIC: u32 = 0x336e_c578;
/// Longest command line read.
const CMDLINE_MAX: usize = 8192;

#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

// The PVH entry (Xen's XEN_ELFNOTE_PHYS32_ENTRY, note type 18, which QEMU,
// Firecracker and cloud-hypervisor honour): 32-bit protected mode, paging
// off, flat segments, %ebx = physical address of hvm_start_info. It
// identity-maps the first 4 GiB (2 MiB pages, read-write-execute for now),
// enables PAE, SSE (OSFXSR, OSXMMEXCPT; EM off, MP on) and long mode, loads
// a 64-bit GDT, switches to its own stack in .bss and calls `entry`.
// Interrupts stay off for the guest's life, so the red zone that the
// prebuilt `core` uses is safe.
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
    ".pushsection .text.lamina_pvh_start, \"ax\"",
    ".code32",
    ".global lamina_pvh_start",
    "lamina_pvh_start:",
    "  cli",
    "  cld",
    "  mov esi, ebx",
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
    "  and eax, 0xfffffffb", // EM off
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
    "  mov edi, esi",
    "  call {entry}",
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
    entry = sym entry,
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

/// Rust entry from the PVH entry, in long mode.
extern "C" fn entry(start_info: u32) -> ! {
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
    let image_end = (&raw const _end) as u64;
    // The largest RAM region above the image and inside the mapping.
    let mut best = (0u64, 0u64);
    for i in 0..info.memmap_entries as usize {
        // SAFETY: the memory map has `memmap_entries` entries at this address.
        let e = unsafe {
            core::ptr::read_unaligned((info.memmap_paddr as usize as *const MemmapEntry).add(i))
        };
        if e.kind != RAM {
            continue;
        }
        let start = e.addr.max(image_end).next_multiple_of(4096);
        let end = e.addr.saturating_add(e.size).min(MAPPED) & !4095;
        if end > start && end - start > best.1 - best.0 {
            best = (start, end);
        }
    }
    if best.1 - best.0 < MIN_HEAP {
        fail("not enough guest memory for a heap: give the VM more (-m)");
    }
    // SAFETY: the region is RAM the memory map reports free, above the image
    // (whose .bss holds the stack and page tables); nothing else uses it and
    // this runs once, before any allocation.
    unsafe {
        HEAP.lock()
            .init(best.0 as *mut u8, (best.1 - best.0) as usize)
    };
    if !hw::clock_init() {
        fail("cannot calibrate the TSC: no PIT and no CPUID frequency leaves");
    }
    // SAFETY: the VMM keeps the NUL-terminated command line at this address
    // (outside the memory handed to the heap: it is below the image or in
    // memory the map does not report as RAM) for the guest's lifetime.
    let cmdline = unsafe { read_cmdline(info.cmdline_paddr) };
    // SAFETY: the application defines this symbol through `lamina::main!`.
    let status = unsafe { __lamina_guest_main(Boot { cmdline }) };
    hw::exit(status)
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
    hw::uart_write(b"lamina: cannot boot: ");
    hw::uart_write(why.as_bytes());
    hw::uart_write(b"\n");
    hw::exit(1)
}

/// Log records go to the console, one write per line.
static LOGGER: boot::ConsoleLogger = boot::ConsoleLogger {
    now: hw::monotonic_ns,
    write: hw::uart_write,
};

/// Boots an application: takes the device words out of the command line
/// (see [`crate::cmdline`]), parses the rest into its arguments, installs
/// the logger, brings up the virtio devices and runs `main` to completion. Returns the exit
/// status: 0 on success, 1 when `main` fails, 2 for a bad command line.
///
/// Called by `lamina::main!`; applications do not call it themselves.
pub fn start<A, F, Fut>(boot: Boot, main: F) -> i32
where
    A: BootArgs,
    F: FnOnce(Env<GuestPlatform>, A) -> Fut,
    Fut: Future,
    Fut::Output: IntoExit,
{
    let mut words = match boot_args::split_command_line(boot.cmdline) {
        Ok(words) => words,
        Err(e) => {
            hw::uart_write(alloc::format!("unikernel: {e}\n").as_bytes());
            return 2;
        }
    };
    let device_words = match crate::cmdline::take_device_words(&mut words) {
        Ok(found) => found,
        Err(e) => {
            hw::uart_write(alloc::format!("unikernel: {e}\n").as_bytes());
            return 2;
        }
    };
    let mut app = A::defaults();
    #[allow(unused_mut)] // parsed only by images with a network device
    let mut net_args = lamina_net::NetArgs::defaults();
    let mut runtime_args = RuntimeArgs::defaults();
    let parsed = boot::parse_command_line(
        "unikernel",
        &words,
        &mut [
            &mut app,
            #[cfg(lamina_net)]
            &mut net_args,
            &mut runtime_args,
        ],
    )
    .and_then(|()| boot::apply_runtime_args("unikernel", &runtime_args));
    if let Err(stop) = parsed {
        hw::uart_write(stop.text.as_bytes());
        return stop.status;
    }
    let _ = log::set_logger(&LOGGER);
    if let Some(name) = &runtime_args.name {
        log::info!("deployment name: {name}");
    }
    let devices = virtio::discover(&device_words, MAPPED);
    let park = Rc::new(GuestPark::new());
    park.attach(&devices.all);
    let executor = Executor::new(park);
    // TCP buffers may take at most half the heap, whatever was asked: the
    // rest is for the application and the stack's own state.
    let heap = HEAP.lock().size();
    net_args.tcp_memory = net_args.tcp_memory.min(heap / 2);
    let platform = GuestPlatform::new(devices, executor.handle(), net_args);
    let env = Env::new(platform, executor.handle());
    let output = executor.block_on(main(env, app));
    let exit = output.into_exit(&|message| {
        let mut line: Vec<u8> = Vec::from(message.as_bytes());
        line.push(b'\n');
        hw::uart_write(&line);
    });
    exit.0 as i32
}

/// A panic prints its message and location and stops the unikernel with
/// [`PANIC_STATUS`]. Nothing hangs, nothing unwinds.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hw::uart_write(boot::PanicLine::new(info).as_bytes());
    hw::exit(PANIC_STATUS)
}

/// Exit status of a panic (Solo5's abort is 255, which isa-debug-exit
/// cannot carry: see [`crate::exit`]).
const PANIC_STATUS: i32 = crate::exit::MAX_STATUS;

/// Referenced by cleanup paths in the prebuilt `alloc`, which was compiled
/// with unwinding. With `panic = "abort"` nothing unwinds, so it is never
/// called; if it were, stopping is the only correct thing to do.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    hw::uart_write(b"lamina: unwinding is not supported\n");
    hw::exit(PANIC_STATUS)
}
