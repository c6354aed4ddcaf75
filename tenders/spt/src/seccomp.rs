//! The spt sandbox: a seccomp filter that kills the process on any system
//! call the spt ABI does not need (ABI.md 5.3-5.4). The core rules are
//! here; each device module adds the rules for its own descriptors.

use lamina_tender::devices::Devices;
use lamina_tender::sandbox;
pub use lamina_tender::sandbox::SeccompError;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Descriptors the core rules pin.
#[derive(Debug, Clone, Copy)]
pub struct CoreFds {
    /// The epoll set the guest waits on.
    pub epoll: i32,
    /// The timerfd the guest arms for its deadline.
    pub timer: i32,
    /// With `--dumpcore`: the unnamed core file and its directory.
    pub core: Option<(i32, i32)>,
    /// The trace file the guest writes its recording to (`--trace`).
    pub trace: Option<i32>,
}

/// The status of the guest's abort (`solo5_abort`), as a rule compares it.
const EXIT_ABORT: u64 = lamina_abi::EXIT_ABORT as u64;

/// `arch_prctl` code that sets the FS base (asm/prctl.h).
const ARCH_SET_FS: u64 = 0x1002;

fn only(index: u8, value: u64) -> Result<SeccompRule, BackendError> {
    sandbox::arg_is(index, value)
}

/// The rules every guest gets, as (syscall, rule) pairs.
fn core_rules(fds: CoreFds) -> Result<Vec<(i64, SeccompRule)>, BackendError> {
    let mut rules = Vec::new();
    if let Some(trace) = fds.trace {
        // The guest's trace recording, appended to the file it was offered.
        rules.push((libc::SYS_write, only(0, trace as u64)?));
    }
    rules.extend([
        // Console output goes to the tender's stdout.
        (libc::SYS_write, only(0, 1)?),
        // The fault handler's report goes to stderr (`fault`); it runs
        // under this filter. The guest could write there too: no more
        // than it can do on stdout.
        (libc::SYS_write, only(0, 2)?),
        // solo5_yield blocks on the tender's epoll set (net fds + timer).
        (libc::SYS_epoll_pwait, only(0, fds.epoll as u64)?),
        // solo5_yield arms the deadline on the tender's internal timerfd.
        (libc::SYS_timerfd_settime, only(0, fds.timer as u64)?),
        // solo5_clock_monotonic and solo5_clock_wall, no other clocks.
        (
            libc::SYS_clock_gettime,
            only(0, libc::CLOCK_MONOTONIC as u64)?,
        ),
        (
            libc::SYS_clock_gettime,
            only(0, libc::CLOCK_REALTIME as u64)?,
        ),
        // solo5_set_tls_base: set FS only (never read GS or change GS).
        (libc::SYS_arch_prctl, only(0, ARCH_SET_FS)?),
    ]);
    Ok(rules)
}

/// Compiles the filter for these devices. Call before installing: the
/// compiled program is the last allocation the tender makes.
pub fn build(fds: CoreFds, devices: &Devices) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut all = core_rules(fds)?;
    for block in &devices.blocks {
        all.extend(block.spt_rules()?);
    }
    for net in &devices.nets {
        all.extend(net.spt_rules()?);
    }
    if let Some((file, dir)) = fds.core {
        // --dumpcore: the fault and abort handlers write the core into its
        // unnamed file and link it into its directory; the abort handler
        // then ends the process with the abort's status by `exit` (see
        // [`abort_trap`]), which the guest could call too: with one
        // thread, the same as its own `exit_group(255)`.
        all.extend(sandbox::core_file_rules(file, dir)?);
        all.push((libc::SYS_exit, only(0, EXIT_ABORT)?));
    }
    for (syscall, rule) in all {
        rules.entry(syscall).or_default().push(rule);
    }
    // solo5_exit and solo5_abort: the status is the guest's to choose. An
    // empty rule list is seccompiler's way to allow a call unconditionally.
    rules.insert(libc::SYS_exit_group, Vec::new());
    // The fault handler returns, so that the faulting instruction faults
    // again and the process dies by its signal. The call only restores
    // registers the guest could set itself.
    rules.insert(libc::SYS_rt_sigreturn, Vec::new());
    sandbox::compile(rules)
}

/// With `--dumpcore`, the filter installed before the allowlist ([`build`])
/// that turns the guest's abort into a core file: `exit_group` with the
/// status `solo5_abort` gives (255, what a panic ends in; hvt's tender
/// takes the same status for an abort) raises SIGSYS instead, whose
/// handler (`fault`) writes the core and ends the process with `exit` and
/// that status. Filters stack and the stricter answer wins (a trap over
/// the allowlist's allow); every other call is the allowlist's to judge.
pub fn abort_trap() -> Result<BpfProgram, SeccompError> {
    let rules = BTreeMap::from([(libc::SYS_exit_group, vec![only(0, EXIT_ABORT)?])]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Trap,
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

/// Installs `program` on this (the only) thread: after this the process
/// may make only the calls the rules allow, and the tender must not
/// allocate, print or return.
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    sandbox::install(program)
}
