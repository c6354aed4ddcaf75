//! The hvt sandbox, installed before the first `KVM_RUN`: a default-kill
//! allowlist of what the vCPU loop, the hypercall handlers and the exit
//! path of the process need. Device descriptors are pinned where the
//! call takes one.

use lamina_tender::devices::Devices;
use lamina_tender::sandbox;
pub use lamina_tender::sandbox::SeccompError;
use seccompiler::{BackendError, SeccompRule};
use std::collections::BTreeMap;

/// Descriptors the loop uses.
#[derive(Debug, Clone, Copy)]
pub struct LoopFds {
    /// The vCPU.
    pub vcpu: i32,
    /// The poll set.
    pub epoll: i32,
    /// The poll timer.
    pub timer: i32,
    /// The ring's kick eventfd, written once to stop the I/O thread.
    pub kick: Option<i32>,
}

fn fd_is(fd: i32) -> Result<SeccompRule, BackendError> {
    sandbox::arg_is(0, fd as u64)
}

/// Builds and installs the filter on this, the vCPU, thread (the ring I/O
/// thread, started before, has its own: [`install_ring`]).
pub fn install(fds: LoopFds, devices: &Devices) -> Result<(), SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    // KVM_RUN and the register reads of an error report, on the vCPU only.
    allow(libc::SYS_ioctl, fd_is(fds.vcpu)?);
    // PUTS goes to stdout; tender messages go to stderr.
    allow(libc::SYS_write, fd_is(1)?);
    allow(libc::SYS_write, fd_is(2)?);
    // POLL: arm the timer, wait on the set.
    allow(libc::SYS_timerfd_settime, fd_is(fds.timer)?);
    allow(libc::SYS_epoll_wait, fd_is(fds.epoll)?);
    allow(libc::SYS_epoll_pwait, fd_is(fds.epoll)?);
    if let Some(kick) = fds.kick {
        allow(libc::SYS_write, fd_is(kick)?);
    }
    for block in &devices.blocks {
        // BLOCK_READ / BLOCK_WRITE on that file only (ranges are checked
        // by the handler against the capacity).
        allow(libc::SYS_pread64, fd_is(block.fd())?);
        allow(libc::SYS_pwrite64, fd_is(block.fd())?);
    }
    for net in &devices.nets {
        // NET_READ / NET_WRITE on that tap only.
        allow(libc::SYS_read, fd_is(net.fd())?);
        allow(libc::SYS_write, fd_is(net.fd())?);
    }
    // Dropping a descriptor in a debug build first checks it with
    // fcntl(fd, F_GETFD) (std's I/O-safety assertion).
    allow(libc::SYS_fcntl, sandbox::arg_is(1, libc::F_GETFD as u64)?);
    for syscall in [
        // WALLTIME, when the vDSO falls back to the system call.
        libc::SYS_clock_gettime,
        // The allocator, for error messages and the exit path.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        // Exit: closing descriptors, and the process end itself.
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
        // Signals that interrupt KVM_RUN return through here.
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_futex,
    ] {
        // An empty rule list allows the call whatever its arguments.
        rules.insert(syscall, Vec::new());
    }
    apply(rules)
}

/// The ring I/O thread's own filter, installed on that thread: the tap
/// descriptors, its epoll and kick eventfd, and signalling the vCPU thread.
pub fn install_ring(taps: &[i32], epoll: i32, kick: i32) -> Result<(), SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    for &tap in taps {
        allow(libc::SYS_read, fd_is(tap)?);
        allow(libc::SYS_write, fd_is(tap)?);
    }
    allow(libc::SYS_read, fd_is(kick)?);
    allow(libc::SYS_epoll_wait, fd_is(epoll)?);
    allow(libc::SYS_epoll_pwait, fd_is(epoll)?);
    allow(libc::SYS_write, fd_is(2)?);
    allow(libc::SYS_fcntl, sandbox::arg_is(1, libc::F_GETFD as u64)?);
    for syscall in [
        // Signalling the vCPU thread when the guest must stop.
        libc::SYS_tgkill,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        // Time (when the vDSO falls back), the allocator, locks, the end.
        libc::SYS_clock_gettime,
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sigaltstack,
        libc::SYS_close,
        libc::SYS_exit,
    ] {
        rules.insert(syscall, Vec::new());
    }
    apply(rules)
}

fn apply(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), SeccompError> {
    sandbox::install(&sandbox::compile(rules)?)
}
