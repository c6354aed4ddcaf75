//! The jump into the guest: the only `unsafe` of the spt tender.

/// Restores the default action of the signals a guest fault raises.
///
/// The tender runs without std's runtime (which handles SIGSEGV and SIGBUS
/// and ignores SIGPIPE), but a parent may have left any of these ignored,
/// and that survives exec. With the defaults a faulting guest dies by its
/// signal (SIGSEGV: status 139), exactly as under Solo5's tender.
pub fn default_signals() {
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGPIPE,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        // SAFETY: SIG_DFL installs no handler; nothing in this process
        // depends on the handlers being there once the guest runs.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// Switches to the guest's stack and jumps to its entry with `%rdi` =
/// boot info, as Solo5's `spt_launch` does. Never returns: the guest ends
/// the process with `exit_group` or a signal.
///
/// # Safety
/// `entry` must be guest code loaded and mapped executable, `stack` the
/// top of mapped guest memory, and `boot_info` the address of a complete
/// spt boot info. Nothing on the tender's stack is used again.
pub unsafe fn jump(stack: u64, entry: u64, boot_info: u64) -> ! {
    // SAFETY: guaranteed by the caller; the asm never returns, so no Rust
    // state after it has to be valid.
    unsafe {
        core::arch::asm!(
            "mov rsp, {stack}",
            "jmp {entry}",
            stack = in(reg) stack,
            entry = in(reg) entry,
            in("rdi") boot_info,
            options(noreturn),
        )
    }
}
