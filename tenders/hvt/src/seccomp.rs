//! The hvt sandbox, one default-kill allowlist per thread, installed before
//! the guest runs: what the vCPU loop, the hypercall handlers and the exit
//! path need ([`install`]), what the network ring's I/O thread needs
//! ([`install_ring`]) and what the block ring's needs
//! ([`install_block_ring`]). Descriptors are pinned where a call takes one;
//! `ioctl` is pinned to the vCPU and to the three KVM requests the loop makes
//! (the tap's requests are all made at start-up, before the filter);
//! `mmap` and `mprotect` are allowed for the allocator, never with `PROT_EXEC`;
//! `openat` fails instead of killing, for the allocator too
//! ([`sandbox::compile_refusing_openat`]).

use lamina_abi::mft::block_features;
use lamina_tender::devices::block::BlockDevice;
use lamina_tender::devices::Devices;
use lamina_tender::sandbox;
pub use lamina_tender::sandbox::SeccompError;
use seccompiler::{
    BackendError, BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
};
use std::collections::BTreeMap;

/// `KVM_RUN`: `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = 0xae80;
/// `KVM_GET_REGS`: `_IOR(KVMIO, 0x81, struct kvm_regs)`, for the registers
/// of an error report.
pub const KVM_GET_REGS: u64 = 0x8090_ae81;
/// `KVM_GET_SREGS`: `_IOR(KVMIO, 0x83, struct kvm_sregs)`, for the
/// faulting address (CR2) of a fault report.
pub const KVM_GET_SREGS: u64 = 0x8138_ae83;

/// `KVM_SET_REGS`: `_IOW(KVMIO, 0x82, struct kvm_regs)`, for gdb (and to
/// resume from a breakpoint or step).
pub const KVM_SET_REGS: u64 = 0x4090_ae82;
/// `KVM_GET_FPU`: `_IOR(KVMIO, 0x8c, struct kvm_fpu)`, for gdb.
pub const KVM_GET_FPU: u64 = 0x81a0_ae8c;

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
    /// The block ring's kick eventfd, written once to stop its thread.
    pub block_kick: Option<i32>,
    /// The stop eventfd, written by the stop signals' handler.
    pub stop_event: i32,
    /// With the receive queues: the POLL set that waits for them, and the
    /// eventfd the I/O thread wakes it with (drained here).
    pub rx: Option<(i32, i32)>,
    /// With `--dumpcore`: the unnamed core file, and its directory.
    pub core: Option<(i32, i32)>,
    /// With `--gdb`: gdb's connection.
    pub gdb: Option<i32>,
}

fn fd_is(fd: i32) -> Result<SeccompRule, BackendError> {
    sandbox::arg_is(0, fd as u64)
}

/// Rules every thread of the tender needs: the allocator (no executable
/// memory), locks, signal returns, and the thread's end.
fn common_rules(rules: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), BackendError> {
    // The allocator: glibc grows a thread's heap with mprotect, and large
    // blocks are mmap'ed; neither ever needs PROT_EXEC.
    rules.insert(libc::SYS_mmap, vec![sandbox::without_exec()?]);
    rules.insert(libc::SYS_mprotect, vec![sandbox::without_exec()?]);
    // Dropping a descriptor in a debug build first checks it with
    // fcntl(fd, F_GETFD) (std's I/O-safety assertion).
    rules
        .entry(libc::SYS_fcntl)
        .or_default()
        .push(sandbox::arg_is(1, libc::F_GETFD as u64)?);
    for syscall in [
        // Time, when the vDSO falls back to the system call.
        libc::SYS_clock_gettime,
        // The rest of the allocator.
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        // Locks, and the signals that interrupt a blocking call.
        libc::SYS_futex,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        // The end: closing descriptors, and the thread's exit.
        libc::SYS_close,
        libc::SYS_exit,
    ] {
        // An empty rule list allows the call whatever its arguments.
        rules.insert(syscall, Vec::new());
    }
    Ok(())
}

/// The vCPU thread's rules.
fn vcpu_rules(
    fds: LoopFds,
    devices: &Devices,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    common_rules(&mut rules)?;
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    // KVM_RUN, and the register read of an error report, on the vCPU only.
    allow(libc::SYS_ioctl, sandbox::ioctl_is(fds.vcpu, KVM_RUN)?);
    allow(libc::SYS_ioctl, sandbox::ioctl_is(fds.vcpu, KVM_GET_REGS)?);
    allow(libc::SYS_ioctl, sandbox::ioctl_is(fds.vcpu, KVM_GET_SREGS)?);
    // PUTS goes to stdout; tender messages go to stderr.
    allow(libc::SYS_write, fd_is(1)?);
    allow(libc::SYS_write, fd_is(2)?);
    // POLL: arm the timer, wait on the set.
    allow(libc::SYS_timerfd_settime, fd_is(fds.timer)?);
    allow(libc::SYS_epoll_wait, fd_is(fds.epoll)?);
    allow(libc::SYS_epoll_pwait, fd_is(fds.epoll)?);
    for kick in [fds.kick, fds.block_kick].into_iter().flatten() {
        allow(libc::SYS_write, fd_is(kick)?);
    }
    allow(libc::SYS_write, fd_is(fds.stop_event)?);
    if let Some((epoll, wake)) = fds.rx {
        allow(libc::SYS_epoll_wait, fd_is(epoll)?);
        allow(libc::SYS_epoll_pwait, fd_is(epoll)?);
        allow(libc::SYS_read, fd_is(wake)?);
    }
    for block in &devices.blocks {
        // BLOCK_READ / BLOCK_WRITE on that file only (requests are checked
        // by the handler: whole sectors on the device).
        allow(libc::SYS_pread64, fd_is(block.fd())?);
        allow(libc::SYS_pwrite64, fd_is(block.fd())?);
        if block.features & block_features::FLUSH != 0 {
            // BLOCK_FLUSH: fdatasync of that file only.
            allow(libc::SYS_fdatasync, fd_is(block.fd())?);
        }
    }
    for net in &devices.nets {
        // NET_READ / NET_WRITE on that tap only (recv: a user-mode link).
        allow(libc::SYS_read, fd_is(net.fd())?);
        allow(libc::SYS_recvfrom, fd_is(net.fd())?);
        allow(libc::SYS_write, fd_is(net.fd())?);
    }
    if let Some(conn) = fds.gdb {
        // --gdb: the protocol on its connection (std's TcpStream reads
        // with recv and writes with send; gdbstub's peek switches it to
        // non-blocking and back with FIONBIO).
        allow(libc::SYS_recvfrom, fd_is(conn)?);
        allow(libc::SYS_sendto, fd_is(conn)?);
        allow(libc::SYS_read, fd_is(conn)?);
        allow(libc::SYS_write, fd_is(conn)?);
        allow(libc::SYS_ioctl, sandbox::ioctl_is(conn, libc::FIONBIO)?);
        allow(libc::SYS_ioctl, sandbox::ioctl_is(fds.vcpu, KVM_SET_REGS)?);
        allow(libc::SYS_ioctl, sandbox::ioctl_is(fds.vcpu, KVM_GET_FPU)?);
        // gdbstub's session start sets TCP_NODELAY (again).
        allow(
            libc::SYS_setsockopt,
            SeccompRule::new(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, conn as u64)?,
                SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    libc::IPPROTO_TCP as u64,
                )?,
                SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    libc::TCP_NODELAY as u64,
                )?,
            ])?,
        );
    }
    if let Some((file, dir)) = fds.core {
        // --dumpcore: the core written into its unnamed file, then linked
        // into its directory, nowhere else.
        for (syscall, rule) in sandbox::core_file_rules(file, dir)? {
            allow(syscall, rule);
        }
    }
    if fds.rx.is_some() {
        // POLL's look for input gives the CPU to whoever else wants it.
        rules.insert(libc::SYS_sched_yield, Vec::new());
    }
    // The process ends here, with the guest's status.
    rules.insert(libc::SYS_exit_group, Vec::new());
    Ok(rules)
}

/// The signal the ring I/O thread sends the vCPU thread when the guest
/// must stop (the only signal it may send).
pub const RING_STOP_SIGNAL: libc::c_int = libc::SIGUSR1;

/// The ring I/O thread's rules: the tap descriptors, its epoll and kick
/// eventfd, the rx-wake eventfd (written), and [`RING_STOP_SIGNAL`] to a
/// thread of process `pid` (the tender's). No ioctl at all.
fn ring_rules(
    taps: &[i32],
    epoll: i32,
    kick: i32,
    rx_wake: Option<i32>,
    pid: u32,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    common_rules(&mut rules)?;
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    for &tap in taps {
        allow(libc::SYS_read, fd_is(tap)?);
        allow(libc::SYS_recvfrom, fd_is(tap)?);
        allow(libc::SYS_write, fd_is(tap)?);
    }
    allow(libc::SYS_read, fd_is(kick)?);
    if let Some(wake) = rx_wake {
        allow(libc::SYS_write, fd_is(wake)?);
    }
    allow(libc::SYS_epoll_wait, fd_is(epoll)?);
    allow(libc::SYS_epoll_pwait, fd_is(epoll)?);
    allow(libc::SYS_write, fd_is(2)?);
    // Signalling the vCPU thread when the guest must stop: tgkill(pid,
    // tid, signal) within the tender and with that signal only.
    rules.insert(libc::SYS_tgkill, vec![stop_signal_rule(pid)?]);
    for syscall in [
        libc::SYS_getpid,
        libc::SYS_gettid,
        // Spinning politely.
        libc::SYS_sched_yield,
    ] {
        rules.insert(syscall, Vec::new());
    }
    Ok(rules)
}

/// The block ring I/O thread's rules: `pread64`/`pwrite64` (and
/// `fdatasync` where the device takes flushes) on its own descriptors of
/// the block devices (every request is checked by the server: whole
/// sectors on the device), its epoll and kick eventfd, and
/// [`RING_STOP_SIGNAL`] to a thread of process `pid`. No ioctl at all.
fn block_ring_rules(
    blocks: &[BlockDevice],
    epoll: i32,
    kick: i32,
    pid: u32,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    common_rules(&mut rules)?;
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    for block in blocks {
        allow(libc::SYS_pread64, fd_is(block.fd())?);
        allow(libc::SYS_pwrite64, fd_is(block.fd())?);
        if block.features & block_features::FLUSH != 0 {
            allow(libc::SYS_fdatasync, fd_is(block.fd())?);
        }
    }
    allow(libc::SYS_read, fd_is(kick)?);
    allow(libc::SYS_epoll_wait, fd_is(epoll)?);
    allow(libc::SYS_epoll_pwait, fd_is(epoll)?);
    allow(libc::SYS_write, fd_is(2)?);
    rules.insert(libc::SYS_tgkill, vec![stop_signal_rule(pid)?]);
    for syscall in [libc::SYS_getpid, libc::SYS_gettid, libc::SYS_sched_yield] {
        rules.insert(syscall, Vec::new());
    }
    Ok(rules)
}

/// The trace thread's rules: writes to the trace `file` (appended, and
/// the clock offset into its header) and to stderr. It reads guest memory
/// and no other descriptor.
fn trace_rules(file: i32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    common_rules(&mut rules)?;
    let mut allow = |syscall: i64, rule: SeccompRule| rules.entry(syscall).or_default().push(rule);
    allow(libc::SYS_write, fd_is(file)?);
    allow(libc::SYS_pwrite64, fd_is(file)?);
    allow(libc::SYS_write, fd_is(2)?);
    Ok(rules)
}

/// tgkill(pid, tid, signal) within process `pid` and with
/// [`RING_STOP_SIGNAL`] only.
fn stop_signal_rule(pid: u32) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, pid.into())?,
        SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            RING_STOP_SIGNAL as u64,
        )?,
    ])
}

/// A thread's filter, compiled: its allowlist behind the refusal of
/// `openat` ([`sandbox::compile_refusing_openat`]).
pub type Filter = BpfProgram;

fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<Filter, SeccompError> {
    sandbox::compile_refusing_openat(rules)
}

/// The vCPU thread's filter.
pub fn vcpu_filter(fds: LoopFds, devices: &Devices) -> Result<Filter, SeccompError> {
    filter(vcpu_rules(fds, devices)?)
}

/// The ring I/O thread's filter, for the tender process `pid`.
pub fn ring_filter(
    taps: &[i32],
    epoll: i32,
    kick: i32,
    rx_wake: Option<i32>,
    pid: u32,
) -> Result<Filter, SeccompError> {
    filter(ring_rules(taps, epoll, kick, rx_wake, pid)?)
}

/// The block ring I/O thread's filter.
pub fn block_ring_filter(
    blocks: &[BlockDevice],
    epoll: i32,
    kick: i32,
    pid: u32,
) -> Result<Filter, SeccompError> {
    filter(block_ring_rules(blocks, epoll, kick, pid)?)
}

/// The trace thread's filter, for the trace file `file`.
pub fn trace_filter(file: i32) -> Result<Filter, SeccompError> {
    filter(trace_rules(file)?)
}

/// Installs `filter` on the calling thread.
fn apply(filter: &Filter) -> Result<(), SeccompError> {
    sandbox::install(filter)
}

/// Builds and installs the filters on this, the vCPU, thread (the ring I/O
/// thread, started before, has its own: [`install_ring`]).
pub fn install(fds: LoopFds, devices: &Devices) -> Result<(), SeccompError> {
    apply(&vcpu_filter(fds, devices)?)
}

/// Builds and installs the ring I/O thread's filters, on that thread.
pub fn install_ring(
    taps: &[i32],
    epoll: i32,
    kick: i32,
    rx_wake: Option<i32>,
) -> Result<(), SeccompError> {
    apply(&ring_filter(
        taps,
        epoll,
        kick,
        rx_wake,
        std::process::id(),
    )?)
}

/// Builds and installs the block ring I/O thread's filters, on that
/// thread.
pub fn install_block_ring(
    blocks: &[BlockDevice],
    epoll: i32,
    kick: i32,
) -> Result<(), SeccompError> {
    apply(&block_ring_filter(blocks, epoll, kick, std::process::id())?)
}

/// Builds and installs the trace thread's filters, on that thread.
pub fn install_trace(file: i32) -> Result<(), SeccompError> {
    apply(&trace_filter(file)?)
}

/// The filters against the calls they must kill and the ones they must
/// let through, each in a child process of its own (Firecracker's way:
/// run the filter, not a model of it). The raw system calls they make are
/// the tender's only `unsafe` outside `kvm`, and only in tests.
#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// What became of a child.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        Exited(i32),
        Killed(i32),
    }

    /// Runs `body` in a forked child under `program` (installed on the
    /// child's only thread) and reports how the child ended: the status
    /// `body` returned, or the signal that killed it.
    fn under_filter(program: &Filter, body: impl FnOnce() -> i32) -> End {
        in_child(Some(program), body)
    }

    /// [`under_filter`], or with no filter at all.
    fn in_child(program: Option<&Filter>, body: impl FnOnce() -> i32) -> End {
        // SAFETY: the child only installs the filter, runs `body` (system
        // calls, and allocations, which glibc's fork handlers make safe in
        // the child of a threaded parent) and ends with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let status = match program.map_or(Ok(()), apply) {
                Ok(()) => body(),
                Err(_) => 100,
            };
            // SAFETY: ends the child without running the parent's
            // destructors or atexit handlers (SYS_exit: allowed by every
            // filter here, and the child's only thread).
            unsafe { libc::syscall(libc::SYS_exit, status) };
            unreachable!();
        }
        let mut status = 0;
        // SAFETY: waits for our own child; writes one int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        if libc::WIFSIGNALED(status) {
            End::Killed(libc::WTERMSIG(status))
        } else {
            End::Exited(libc::WEXITSTATUS(status))
        }
    }

    const KILLED: End = End::Killed(libc::SIGSYS);
    const SURVIVED: End = End::Exited(0);

    fn no_devices() -> Devices {
        Devices {
            manifest: Vec::new(),
            blocks: Vec::new(),
            nets: Vec::new(),
        }
    }

    /// A stand-in vCPU descriptor: the filter looks at numbers, and an
    /// ioctl it lets through then fails harmlessly (ENOTTY) on /dev/null.
    fn stand_ins() -> (std::fs::File, std::fs::File, LoopFds) {
        let vcpu = std::fs::File::open("/dev/null").unwrap();
        let other = std::fs::File::open("/dev/null").unwrap();
        let fds = LoopFds {
            vcpu: vcpu.as_raw_fd(),
            epoll: other.as_raw_fd(),
            timer: other.as_raw_fd(),
            kick: None,
            block_kick: None,
            stop_event: other.as_raw_fd(),
            rx: None,
            core: None,
            gdb: None,
        };
        (vcpu, other, fds)
    }

    fn ioctl(fd: i32, request: u64) -> i32 {
        // SAFETY: no memory argument; the filter decides first, and an
        // allowed call fails on /dev/null without touching memory.
        unsafe { libc::ioctl(fd, request as libc::c_ulong, 0usize) };
        0
    }

    /// Maps one anonymous page with `prot`; 0 on success.
    fn mmap(prot: libc::c_int) -> i32 {
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        i32::from(page == libc::MAP_FAILED)
    }

    /// Maps a read-write page and changes it to `prot`; 0 on success.
    fn mprotect(prot: libc::c_int) -> i32 {
        // SAFETY: as in `mmap`; then only that page's protection changes.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if page == libc::MAP_FAILED {
                return 2;
            }
            i32::from(libc::mprotect(page, 4096, prot) != 0)
        }
    }

    /// Allocates and frees small and large blocks, as the tender's error
    /// paths and buffers do (enough that a thread's own heap grows, and
    /// shrinks again); 0 when all of it worked.
    fn allocate() -> i32 {
        let small: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 200]).collect();
        let large = vec![7u8; 16 << 20];
        let sum = small.iter().map(|v| v[0] as usize).sum::<usize>() + large[1 << 20] as usize;
        drop(small);
        drop(large);
        i32::from(sum == 0)
    }

    #[test]
    fn request_numbers_are_the_kernels() {
        const KVMIO: u64 = 0xae;
        const IOC_READ: u64 = 2;
        let regs = std::mem::size_of::<kvm_bindings::kvm_regs>() as u64;
        assert_eq!(KVM_RUN, (KVMIO << 8) | 0x80);
        assert_eq!(
            KVM_GET_REGS,
            (IOC_READ << 30) | (regs << 16) | (KVMIO << 8) | 0x81
        );
        let fpu = std::mem::size_of::<kvm_bindings::kvm_fpu>() as u64;
        assert_eq!(
            KVM_GET_FPU,
            (IOC_READ << 30) | (fpu << 16) | (KVMIO << 8) | 0x8c
        );
        assert_eq!(KVM_SET_REGS, (1 << 30) | (regs << 16) | (KVMIO << 8) | 0x82);
        let sregs = std::mem::size_of::<kvm_bindings::kvm_sregs>() as u64;
        assert_eq!(
            KVM_GET_SREGS,
            (IOC_READ << 30) | (sregs << 16) | (KVMIO << 8) | 0x83
        );
    }

    /// recvfrom(fd) with no buffer: the filter decides first; an allowed
    /// call fails harmlessly (ENOTSOCK on /dev/null).
    fn recv(fd: i32) -> i32 {
        // SAFETY: a zero-length receive into a null buffer touches no memory.
        unsafe {
            libc::recvfrom(
                fd,
                std::ptr::null_mut(),
                0,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        0
    }

    #[test]
    fn gdb_adds_its_connection_and_nothing_without_it() {
        let (_vcpu, _other, fds) = stand_ins();
        let conn = std::fs::File::open("/dev/null").unwrap();
        let without = vcpu_filter(fds, &no_devices()).unwrap();
        assert_eq!(under_filter(&without, || recv(conn.as_raw_fd())), KILLED);
        assert_eq!(
            under_filter(&without, || ioctl(fds.vcpu, KVM_SET_REGS)),
            KILLED
        );
        let with = vcpu_filter(
            LoopFds {
                gdb: Some(conn.as_raw_fd()),
                ..fds
            },
            &no_devices(),
        )
        .unwrap();
        assert_eq!(under_filter(&with, || recv(conn.as_raw_fd())), SURVIVED);
        assert_eq!(
            under_filter(&with, || ioctl(fds.vcpu, KVM_SET_REGS)),
            SURVIVED
        );
        // Another descriptor, another request: still killed.
        assert_eq!(under_filter(&with, || recv(fds.epoll)), KILLED);
        assert_eq!(
            under_filter(&with, || ioctl(conn.as_raw_fd(), KVM_RUN)),
            KILLED
        );
    }

    #[test]
    fn the_vcpu_filter_allows_only_the_loops_ioctls() {
        let (_vcpu, _other, fds) = stand_ins();
        let program = vcpu_filter(fds, &no_devices()).unwrap();
        let vcpu = fds.vcpu;
        let other = fds.epoll;
        assert_eq!(under_filter(&program, || ioctl(vcpu, KVM_RUN)), SURVIVED);
        assert_eq!(
            under_filter(&program, || ioctl(vcpu, KVM_GET_REGS)),
            SURVIVED
        );
        assert_eq!(
            under_filter(&program, || ioctl(vcpu, KVM_GET_SREGS)),
            SURVIVED
        );
        // Other KVM requests: a new VM, new memory, new registers.
        const KVM_CREATE_VM: u64 = 0xae01;
        const KVM_SET_USER_MEMORY_REGION: u64 = 0x4020_ae46;
        const KVM_SET_REGS: u64 = 0x4090_ae82;
        for request in [KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_SET_REGS] {
            assert_eq!(under_filter(&program, || ioctl(vcpu, request)), KILLED);
        }
        // The right request on another descriptor; a tap's request.
        assert_eq!(under_filter(&program, || ioctl(other, KVM_RUN)), KILLED);
        let tunsetiff = libc::TUNSETIFF;
        assert_eq!(under_filter(&program, || ioctl(vcpu, tunsetiff)), KILLED);
    }

    #[test]
    fn no_thread_may_make_executable_memory_but_all_may_allocate() {
        let (_vcpu, _other, fds) = stand_ins();
        let devices = no_devices();
        let programs = [
            vcpu_filter(fds, &devices).unwrap(),
            ring_filter(&[fds.epoll], fds.epoll, fds.epoll, None, std::process::id()).unwrap(),
        ];
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        for program in &programs {
            assert_eq!(under_filter(program, || mmap(rw)), SURVIVED);
            assert_eq!(
                under_filter(program, || mprotect(libc::PROT_READ)),
                SURVIVED
            );
            assert_eq!(under_filter(program, allocate), SURVIVED);
            // openat is refused (the allocator's), not allowed and not killed.
            let refused = || {
                let error = std::fs::File::open("/etc/hostname").unwrap_err();
                i32::from(error.raw_os_error() != Some(libc::EPERM))
            };
            assert_eq!(under_filter(program, refused), SURVIVED);
            assert_eq!(under_filter(program, || mmap(rx)), KILLED);
            assert_eq!(under_filter(program, || mmap(libc::PROT_EXEC)), KILLED);
            assert_eq!(under_filter(program, || mprotect(rx)), KILLED);
            assert_eq!(
                under_filter(program, || mprotect(rw | libc::PROT_EXEC)),
                KILLED
            );
        }
    }

    #[test]
    fn the_ring_thread_may_make_no_ioctl_and_allocates_in_its_own_arena() {
        let (_vcpu, _other, fds) = stand_ins();
        let program =
            ring_filter(&[fds.epoll], fds.epoll, fds.epoll, None, std::process::id()).unwrap();
        assert_eq!(under_filter(&program, || ioctl(fds.vcpu, KVM_RUN)), KILLED);
        let fionbio = libc::FIONBIO;
        assert_eq!(under_filter(&program, || ioctl(fds.epoll, fionbio)), KILLED);
        // As in the tender: a second thread, which allocates before its
        // filter (so glibc gives it an arena of its own) and after it
        // (growing that arena: mprotect without PROT_EXEC).
        let status = in_child(None, || {
            let thread = std::thread::spawn(move || {
                let warm = std::hint::black_box(Box::new([0u8; 64]));
                if apply(&program).is_err() {
                    return 100;
                }
                allocate() + i32::from(warm[0] != 0)
            });
            thread.join().unwrap_or(101)
        });
        assert_eq!(status, SURVIVED);
    }

    /// tgkill(`pid`, this thread, `signal`) with SIGUSR1 blocked (so that
    /// the signal, if sent, stays pending); 0 when the call returned.
    fn tgkill(pid: libc::pid_t, signal: libc::c_int) -> i32 {
        // SAFETY: plain data, set up by sigemptyset/sigaddset; the calls
        // take only that set and numbers.
        unsafe {
            let mut blocked: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut blocked);
            libc::sigaddset(&mut blocked, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            libc::syscall(libc::SYS_tgkill, pid, tid, signal);
        }
        0
    }

    #[test]
    fn the_ring_thread_may_signal_only_its_own_process_with_its_signal() {
        let (_vcpu, _other, fds) = stand_ins();
        // The filter for the child's own pid, built in the child.
        let run = |target: fn(libc::pid_t) -> libc::pid_t, signal: libc::c_int| {
            in_child(None, || {
                // SAFETY: getpid has no preconditions.
                let own = unsafe { libc::getpid() };
                let Ok(program) = ring_filter(&[fds.epoll], fds.epoll, fds.epoll, None, own as u32)
                else {
                    return 100;
                };
                if apply(&program).is_err() {
                    return 100;
                }
                tgkill(target(own), signal)
            })
        };
        let own = |pid| pid;
        let other = |pid| pid + 1;
        assert_eq!(run(own, RING_STOP_SIGNAL), SURVIVED);
        assert_eq!(run(other, RING_STOP_SIGNAL), KILLED);
        assert_eq!(run(|_| 1, RING_STOP_SIGNAL), KILLED);
        assert_eq!(run(own, libc::SIGKILL), KILLED);
        assert_eq!(run(own, libc::SIGTERM), KILLED);
    }

    /// The block ring thread: pread/pwrite on its block device's
    /// descriptor only, fdatasync only with FLUSH, no ioctl.
    #[test]
    fn the_block_ring_thread_may_only_transfer_on_its_devices() {
        let (_vcpu, _other, fds) = stand_ins();
        let (mut block, path) = crate::fixtures::block(1, "seccomp-block-ring");
        let other = std::fs::File::open("/dev/null").unwrap();
        let other_fd = other.as_raw_fd();
        let pread = |fd: i32| {
            let mut buf = [0u8; 512];
            // SAFETY: reads at most 512 bytes into `buf`, which lives for the call.
            let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 512, 0) };
            i32::from(n < 0)
        };
        let fdatasync = |fd: i32| {
            // SAFETY: no memory arguments.
            unsafe { libc::fdatasync(fd) };
            0
        };
        let program = |block: &BlockDevice| {
            block_ring_filter(
                std::slice::from_ref(block),
                fds.epoll,
                fds.epoll,
                std::process::id(),
            )
            .unwrap()
        };
        let bfd = block.fd();
        block.features = 0;
        let without_flush = program(&block);
        block.features = block_features::FLUSH;
        let with_flush = program(&block);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(under_filter(&with_flush, || pread(bfd)), SURVIVED);
        assert_eq!(under_filter(&with_flush, || pread(other_fd)), KILLED);
        assert_eq!(under_filter(&with_flush, || fdatasync(bfd)), SURVIVED);
        assert_eq!(under_filter(&without_flush, || fdatasync(bfd)), KILLED);
        assert_eq!(
            under_filter(&with_flush, || ioctl(fds.vcpu, KVM_RUN)),
            KILLED
        );
    }
    /// The trace thread: writes to its trace file only (appended or at
    /// an offset), no other descriptor, no ioctl.
    #[test]
    fn the_trace_thread_may_only_write_its_file() {
        let (_vcpu, _other, fds) = stand_ins();
        let file = std::fs::File::create(
            std::env::temp_dir().join(format!("lamina-hvt-seccomp-trace-{}", std::process::id())),
        )
        .unwrap();
        let other = std::fs::File::create("/dev/null").unwrap();
        let (file_fd, other_fd) = (file.as_raw_fd(), other.as_raw_fd());
        let write = |fd: i32| {
            // SAFETY: writes 4 bytes from a live array.
            let n = unsafe { libc::write(fd, b"word".as_ptr().cast(), 4) };
            i32::from(n != 4)
        };
        let pwrite = |fd: i32| {
            // SAFETY: as in `write`.
            let n = unsafe { libc::pwrite(fd, b"word".as_ptr().cast(), 4, 16) };
            i32::from(n != 4)
        };
        let program = trace_filter(file_fd).unwrap();
        assert_eq!(under_filter(&program, || write(file_fd)), SURVIVED);
        assert_eq!(under_filter(&program, || pwrite(file_fd)), SURVIVED);
        assert_eq!(under_filter(&program, || write(other_fd)), KILLED);
        assert_eq!(under_filter(&program, || pwrite(other_fd)), KILLED);
        assert_eq!(under_filter(&program, || write(1)), KILLED);
        assert_eq!(under_filter(&program, || ioctl(fds.vcpu, KVM_RUN)), KILLED);
        drop(file);
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("lamina-hvt-seccomp-trace-{}", std::process::id())),
        );
    }
}
