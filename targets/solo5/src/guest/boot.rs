//! From the tender's jump to the application and back: `_start`, the boot
//! info, the heap's region, the Solo5 options and `start`, which hands the
//! rest to `lamina_metal::app::start`. [`Solo5Machine`] is the tender as the
//! shared runtime sees it.

use super::devices::GuestPlatform;
use super::park::GuestPark;
use super::sys;
use alloc::rc::Rc;
use core::future::Future;
use lamina_abi::mft::{Header, Manifest, ENTRY_SIZE, HEADER_SIZE, MAX_ENTRIES};
use lamina_core::args::BootArgs;
use lamina_core::declare::DeviceSet;
use lamina_core::platform::Env;
use lamina_core::runtime::Executor;
use lamina_core::IntoExit;
use lamina_metal::{app, heap, Machine};

/// Stack reserved at the top of guest memory, where the tender points `%rsp`.
const STACK_SIZE: u64 = 512 * 1024;

/// A Solo5 tender (spt or hvt): its console, clocks and halt.
pub struct Solo5Machine;

impl Machine for Solo5Machine {
    #[cfg(feature = "hvt")]
    const TARGET: &'static str = "hvt";
    #[cfg(feature = "spt")]
    const TARGET: &'static str = "spt";
    const PANIC_STATUS: i32 = lamina_abi::EXIT_ABORT;

    fn console_write(bytes: &[u8]) {
        sys::console_write(bytes);
    }

    fn monotonic_ns() -> u64 {
        sys::monotonic_ns()
    }

    fn wall_clock_ns() -> u64 {
        sys::wall_ns()
    }

    fn exit(status: i32) -> ! {
        sys::halt(status)
    }

    fn trace_sink() -> Option<fn(&[u8])> {
        sys::trace_sink()
    }

    fn trace_register(ring: &'static [core::sync::atomic::AtomicU64]) -> bool {
        sys::trace_register(ring)
    }

    fn clock_offset_ns() -> i64 {
        sys::clock_offset_ns()
    }
}

lamina_metal::panic_handler!(Solo5Machine);

// The tender enters here with %rdi = boot info and %rsp near the top of
// memory. On hvt the guest may run at ring 0 (VMX, Solo5's layout) or ring 3
// (KVM-PVM): it touches no segment register and takes no interrupts, so
// either works; the control registers are only written if SSE is not
// already enabled (reads and writes trap on PVM, so they are avoided), and
// not even read when the tender says SSE is on (HOST_FEATURE_SSE).
#[cfg(feature = "hvt")]
core::arch::global_asm!(
    ".section .text._start,\"ax\"",
    ".global _start",
    "_start:",
    "  mov r15, rdi",
    "  and rsp, -16",
    "  test dword ptr [rdi + {host_features}], {sse}",
    "  jnz 2f",
    "  mov rax, cr4",
    "  mov rcx, rax",
    "  or rcx, 0x600", // OSFXSR | OSXMMEXCPT
    "  cmp rax, rcx",
    "  je 2f",
    "  mov cr4, rcx",
    "  mov rax, cr0",
    "  and rax, -5", // clear EM
    "  or rax, 2",   // set MP
    "  mov cr0, rax",
    "2:",
    "  mov rdi, r15",
    "  call {entry}",
    "  ud2",
    entry = sym entry,
    host_features = const core::mem::offset_of!(lamina_abi::hvt::BootInfo, host_features),
    sse = const lamina_abi::hvt::HOST_FEATURE_SSE,
);

// spt: a plain process; SSE is on. Only the stack needs aligning.
#[cfg(feature = "spt")]
core::arch::global_asm!(
    ".section .text._start,\"ax\"",
    ".global _start",
    "_start:",
    "  and rsp, -16",
    "  call {entry}",
    "  ud2",
    entry = sym entry,
);

/// What the runtime hands the application's glue at boot.
pub struct Boot {
    cmdline: &'static str,
    manifest: Manifest<'static>,
}

unsafe extern "Rust" {
    /// Defined by `lamina::main!` in the application: calls [`start`] with
    /// the application's `main`.
    fn __lamina_guest_main(boot: Boot) -> i32;
}

/// Rust entry from `_start`.
extern "C" fn entry(boot_info: usize) -> ! {
    // SAFETY: `_start` passes the tender's boot info pointer unchanged.
    let facts = unsafe { sys::read_boot_info(boot_info) };
    if !facts.tsc_valid {
        fail("the tender reported no usable TSC frequency");
    }
    let heap_start = facts.kernel_end.next_multiple_of(4096);
    let heap_end = facts.mem_size.saturating_sub(STACK_SIZE);
    if heap_end < heap_start + heap::MIN_SIZE {
        fail("not enough guest memory for a heap and a stack: give the tender more (--mem)");
    }
    // SAFETY: [heap_start, heap_end) is guest memory above the image and below
    // the stack, used by nothing else; this runs once, before any allocation.
    // It is zero: the tenders (Lamina's and Solo5's) map fresh anonymous
    // memory and write nothing above the image (their boot info, command
    // line and hvt's page tables are below 1 MiB, the network ring above
    // the guest's `mem_size`).
    unsafe { heap::init(heap_start, heap_end, true) };
    // SAFETY: the tender wrote a NUL-terminated command line of at most
    // CMDLINE_SIZE bytes and the attached manifest at these addresses, and
    // keeps them for the guest's lifetime (they are never written again).
    let (cmdline, manifest) = unsafe { (read_cmdline(facts.cmdline), read_manifest(facts.mft)) };
    let Ok(manifest) = manifest else {
        fail("the tender's manifest is malformed")
    };
    #[cfg(feature = "spt")]
    if let Some(fd) = manifest.entry(0).and_then(|first| first.trace_fd()) {
        sys::offer_trace_fd(fd);
    }
    // SAFETY: the application defines this symbol through `lamina::main!`.
    let status = unsafe { __lamina_guest_main(Boot { cmdline, manifest }) };
    sys::halt(status)
}

/// # Safety
/// `addr` must point to a NUL-terminated string of at most CMDLINE_SIZE bytes
/// that lives forever.
unsafe fn read_cmdline(addr: usize) -> &'static str {
    if addr == 0 {
        return "";
    }
    // SAFETY: per the contract, the buffer is CMDLINE_SIZE bytes.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, lamina_abi::CMDLINE_SIZE) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

/// # Safety
/// `addr` must point to the tender's manifest copy, which lives forever.
unsafe fn read_manifest(addr: usize) -> Result<Manifest<'static>, lamina_abi::mft::MftError> {
    // SAFETY: per the contract there is at least a header at `addr`.
    let header = unsafe { core::ptr::read_unaligned(addr as *const Header) };
    let entries = header.entries.min(MAX_ENTRIES) as usize;
    // SAFETY: the header says how many entries follow (bounded above).
    let bytes = unsafe {
        core::slice::from_raw_parts(addr as *const u8, HEADER_SIZE + entries * ENTRY_SIZE)
    };
    Manifest::parse_attached(bytes)
}

/// Reports a boot failure and stops with status 1.
fn fail(why: &str) -> ! {
    lamina_metal::fail::<Solo5Machine>(why)
}

/// Boots an application: parses the command line into its arguments,
/// installs the logger, acquires the devices it declares (`D`) and runs
/// `main` to completion. Returns the exit status: 0 on success, 1 when
/// `main` fails, 2 for a bad command line or a missing device.
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
    let (solo5_level, line) = crate::cmdline::split_solo5_options(boot.cmdline);
    let words = match app::words(line, Solo5Machine::console_write) {
        Ok(words) => words,
        Err(status) => return status,
    };
    let platform = |net_args| {
        let park = Rc::new(GuestPark::new());
        let executor = Executor::new(park.clone());
        let platform = GuestPlatform::new(park, boot.manifest, executor.handle(), net_args);
        (executor, platform)
    };
    app::start::<Solo5Machine, A, D, _, _, _>(&words, solo5_level, platform, main)
}
