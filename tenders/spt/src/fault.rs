//! Guest faults explained: the guest runs in this process, so its page
//! fault or invalid opcode is a SIGSEGV, SIGBUS, SIGILL or SIGFPE here. A
//! handler installed right before the jump reads the faulting registers
//! from the signal's ucontext, walks the guest's frame-pointer chain and
//! writes one report (see [`lamina_tender::fault`]) to stderr, then
//! returns: the handler is reset on entry (`SA_RESETHAND`), so the
//! instruction faults again and the process dies by the signal, as before
//! (status 128 + N, what Solo5's tender gives).
//!
//! The handler is async-signal-safe: it runs on an alternate stack made
//! beforehand (the guest's own may be what overflowed), builds the report
//! in a fixed buffer on that stack, reads guest memory only between the
//! stack pointer and the top of guest memory (the guest's stack, always
//! mapped read-write) and makes one `write(2)`. The report goes to
//! stderr, like every tender message (the console, stdout, stays the
//! guest's alone, byte for byte what Solo5's tender prints). The handler
//! runs under the guest's seccomp filter, which allows it that: `write` to
//! fd 2, and `rt_sigreturn` for its return (see `seccomp`).
//!
//! A guest that aborts (`solo5_abort`, the end of a panic, whose message
//! and backtrace the guest printed itself) calls `exit_group(255)`, which
//! ends the process at once. With `--dumpcore` a second seccomp filter
//! (`seccomp::abort_trap`) turns that call into SIGSYS, whose handler here
//! writes the core of the guest as it was at the call (recorded as a
//! SIGABRT, as hvt's tender records an abort) and ends the process with
//! `exit(255)`: the same status, now with a core.
//!
//! With `--dumpcore=DIR` the handler also writes an ELF core file (see
//! [`lamina_tender::core_dump`], which allocates nothing) into an unnamed
//! file made in DIR before the sandbox (`O_TMPFILE`), and names it
//! `core.lamina-spt.PID` with `linkat` of `/proc/self/fd/N`; a guest that
//! ends well leaves nothing. The filter then also allows `write` and
//! `lseek` on that file and `linkat` into that directory: the guest, which
//! runs under the same filter, could use them too (write into its own
//! core file, or hard-link a file it names into DIR); without
//! `--dumpcore` none of them is allowed.

use lamina_tender::core_dump::{self, Range, UserRegs};
use lamina_tender::fault::{self, Report};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The signals a guest fault raises.
const FAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Size of the handler's stack.
const HANDLER_STACK: usize = 64 * 1024;

/// The lowest address the guest's stack may be at: the end of its image
/// (below are its segments, with gaps the handler must not read).
static STACK_LOW: AtomicU64 = AtomicU64::new(u64::MAX);
/// The top of guest memory (exclusive).
static MEM_END: AtomicU64 = AtomicU64::new(0);

/// Where the core file goes, with `--dumpcore`; set before the sandbox,
/// only read (an atomic load) by the handler.
static CORE: OnceLock<CoreFile> = OnceLock::new();

/// The unnamed core file and what naming it takes, all made beforehand.
#[derive(Debug)]
pub struct CoreFile {
    file: RawFd,
    dir: RawFd,
    /// `core.lamina-spt.PID`.
    name: CString,
    /// `/proc/self/fd/N` of the file.
    proc_path: CString,
    /// The line saying where it went.
    done: String,
    pid: i32,
}

impl CoreFile {
    /// Makes the unnamed file in `dir`; its descriptors stay open for the
    /// process's life.
    pub fn prepare(dir: &Path) -> std::io::Result<CoreFile> {
        let directory: File = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)?;
        let file: File = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)?;
        let pid = std::process::id();
        let name = format!("core.lamina-spt.{pid}");
        let done = format!("lamina-spt: core dumped to {}\n", dir.join(&name).display());
        let invalid = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
        Ok(CoreFile {
            proc_path: CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .map_err(invalid)?,
            name: CString::new(name).map_err(invalid)?,
            file: file.into_raw_fd(),
            dir: directory.into_raw_fd(),
            done,
            pid: pid as i32,
        })
    }

    /// The file's and the directory's descriptors, for the sandbox.
    pub fn fds(&self) -> (RawFd, RawFd) {
        (self.file, self.dir)
    }
}

/// `write` and `lseek` on a descriptor, allocating nothing.
struct RawWriter(RawFd);

impl std::io::Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: writes `buf`, which lives for the call.
        let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for RawWriter {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let (offset, whence) = match to {
            std::io::SeekFrom::Start(at) => (at as i64, libc::SEEK_SET),
            std::io::SeekFrom::Current(by) => (by, libc::SEEK_CUR),
            std::io::SeekFrom::End(by) => (by, libc::SEEK_END),
        };
        // SAFETY: lseek on a descriptor touches no memory.
        let at = unsafe { libc::lseek(self.0, offset, whence) };
        u64::try_from(at).map_err(|_| std::io::Error::last_os_error())
    }
}

/// Installs the fault handler for a guest whose stack lies in
/// `[kernel_end, mem_end)`. Allocates the alternate stack: call before the
/// seccomp filter.
pub fn install(kernel_end: u64, mem_end: u64, core: Option<CoreFile>) -> std::io::Result<()> {
    if let Some(core) = core {
        let _ = CORE.set(core);
        install_abort_handler()?;
    }
    STACK_LOW.store(kernel_end, Ordering::SeqCst);
    MEM_END.store(mem_end, Ordering::SeqCst);
    // Leaked: the guest owns the process until it exits.
    let stack = Box::leak(vec![0u8; HANDLER_STACK].into_boxed_slice());
    let alt = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: stack.len(),
    };
    // SAFETY: the stack is leaked, so it stays valid for the process's life.
    if unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for signal in FAULT_SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the fields are set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
        // SAFETY: `handler` is async-signal-safe (see the module docs) and
        // has the SA_SIGINFO signature.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// With a core file to write: installs [`abort_handler`] for the SIGSYS
/// the abort trap raises, and unblocks SIGSYS (a trap on a blocked signal
/// would kill the process without the handler).
fn install_abort_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the fields are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = abort_handler as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `abort_handler` is async-signal-safe (see the module docs)
    // and has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed sigset_t is valid for sigemptyset to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both calls only write `set`, which lives for the calls, and
    // the thread's signal mask.
    let unblocked = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    if unblocked != 0 {
        return Err(std::io::Error::from_raw_os_error(unblocked));
    }
    Ok(())
}

/// The signal's name.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

/// The fault handler: reports, then returns to fault again, by default.
extern "C" fn handler(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    if context.is_null() {
        return;
    }
    // SAFETY: with SA_SIGINFO the third argument is the interrupted
    // context, a ucontext_t the kernel wrote on this (alternate) stack.
    let gregs = unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let reg = |index: libc::c_int| gregs[index as usize] as u64;
    let (rip, rsp, rbp) = (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    let vector = reg(libc::REG_TRAPNO);
    let error_code = reg(libc::REG_ERR);
    let cr2 = reg(libc::REG_CR2);
    let mut report = Report::new();
    report.text("lamina-spt: ");
    if vector < 32 {
        // The CPU's own exception: its error code matters for a page fault.
        let code = (vector == 14).then_some(error_code);
        fault::describe_exception(&mut report, vector as u8, code, cr2, rip);
    } else {
        report.text("guest fault at rip=").hex(rip);
    }
    report.text(" (").text(signal_name(signal)).text(")\n");
    let (low, high) = fault::stack_bounds(rsp, MEM_END.load(Ordering::SeqCst));
    let low = low.max(STACK_LOW.load(Ordering::SeqCst));
    let frames = fault::walk(rbp, low, high, |address| {
        // SAFETY: `walk` reads only in [low, high): between the guest's
        // stack pointer (at least the end of its image) and the top of
        // guest memory, the guest's stack and heap, which stay mapped
        // read-write for the process's life.
        Some(unsafe { core::ptr::read_volatile(address as *const u64) })
    });
    report.backtrace(&frames);
    let bytes = report.as_bytes();
    // SAFETY: write(2) of a buffer on this stack; async-signal-safe.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    if let Some(core) = CORE.get() {
        dump_core(core, &gregs, signal);
    }
}

/// The abort handler: the guest called `exit_group(255)` (the only call
/// the abort trap traps; the kernel shows the registers as they were at
/// the call). Writes its core, then ends the process with that status
/// (`exit`, allowed with `--dumpcore`: the process has this one thread).
extern "C" fn abort_handler(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    if let (Some(core), false) = (CORE.get(), context.is_null()) {
        // SAFETY: with SA_SIGINFO the third argument is the interrupted
        // context, a ucontext_t the kernel wrote on this (alternate) stack.
        let gregs = unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        dump_core(core, &gregs, libc::SIGABRT);
    }
    // SAFETY: exit takes a status and does not return.
    unsafe { libc::syscall(libc::SYS_exit, lamina_abi::EXIT_ABORT) };
}

/// Writes the core file of the guest interrupted with `gregs` and names
/// it; says where, or that it failed, on stderr.
fn dump_core(core: &CoreFile, gregs: &[libc::greg_t; 23], signal: libc::c_int) {
    let reg = |index: libc::c_int| gregs[index as usize] as u64;
    let regs = UserRegs {
        r15: reg(libc::REG_R15),
        r14: reg(libc::REG_R14),
        r13: reg(libc::REG_R13),
        r12: reg(libc::REG_R12),
        rbp: reg(libc::REG_RBP),
        rbx: reg(libc::REG_RBX),
        r11: reg(libc::REG_R11),
        r10: reg(libc::REG_R10),
        r9: reg(libc::REG_R9),
        r8: reg(libc::REG_R8),
        rax: reg(libc::REG_RAX),
        rcx: reg(libc::REG_RCX),
        rdx: reg(libc::REG_RDX),
        rsi: reg(libc::REG_RSI),
        rdi: reg(libc::REG_RDI),
        orig_rax: u64::MAX,
        rip: reg(libc::REG_RIP),
        // CS, GS and FS share one word of the context: CS in its low 16 bits.
        cs: reg(libc::REG_CSGSFS) & 0xffff,
        eflags: reg(libc::REG_EFL),
        rsp: reg(libc::REG_RSP),
        ss: 0x2b,
        ..UserRegs::default()
    };
    let mem_end = MEM_END.load(Ordering::SeqCst);
    let base = lamina_abi::spt::HOST_MEM_BASE;
    let ranges = [Range {
        start: base,
        len: mem_end.saturating_sub(base),
    }];
    let read = |address: u64, buf: &mut [u8]| {
        let inside = address >= base
            && address
                .checked_add(buf.len() as u64)
                .is_some_and(|end| end <= mem_end);
        if inside {
            // SAFETY: guest memory, [HOST_MEM_BASE, mem_end), is mapped
            // for the process's life, and readable: each page read-write
            // or the protection of its image segment, which always reads.
            let from = unsafe { core::slice::from_raw_parts(address as *const u8, buf.len()) };
            buf.copy_from_slice(from);
        }
        inside
    };
    let mut out = RawWriter(core.file);
    let written = core_dump::write(&mut out, &regs, signal, core.pid, &ranges, read);
    // SAFETY: both strings are NUL-terminated and live for the call.
    let linked = written.is_ok()
        && unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                core.proc_path.as_ptr(),
                core.dir,
                core.name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        } == 0;
    let message: &[u8] = if linked {
        core.done.as_bytes()
    } else {
        b"lamina-spt: the core file could not be written\n"
    };
    // SAFETY: write(2) of a buffer that lives for the call.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
}
