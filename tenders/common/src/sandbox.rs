//! What the tenders' seccomp filters share: the error, the conditions they
//! use (an argument equals a value: a descriptor, a clock, an `arch_prctl`
//! code; an `ioctl` on one descriptor with one request; memory protections
//! without `PROT_EXEC`) and compiling rules into a filter that kills the
//! process at any other call.

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use thiserror::Error;

/// Why a filter could not be built or installed.
#[derive(Debug, Error)]
pub enum SeccompError {
    /// seccompiler refused a rule (a bug in the rules).
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter: {0}; is seccomp enabled in this kernel?")]
    Install(#[from] seccompiler::Error),
}

/// A rule that holds when argument `index` (as 32 bits) equals `value`.
pub fn arg_is(index: u8, value: u64) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?])
}

/// A rule that holds for `ioctl(fd, request, ...)` exactly: one request on
/// one descriptor.
pub fn ioctl_is(fd: i32, request: u64) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, fd as u64)?,
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)?,
    ])
}

/// A rule for `mmap` and `mprotect` that holds when the protection
/// (argument 2) lacks `PROT_EXEC`: the allocator maps and protects memory,
/// never executable memory, so after the filter no code can be made.
pub fn without_exec() -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )?])
}

/// The calls that write a core file (`--dumpcore`): `write` and `lseek`
/// on the unnamed `file` (zero pages are seeked over), and `linkat` from
/// `/proc/self/fd` (AT_FDCWD, AT_SYMLINK_FOLLOW) into the directory `dir`,
/// nowhere else. As (system call, rule) pairs.
pub fn core_file_rules(file: i32, dir: i32) -> Result<Vec<(i64, SeccompRule)>, BackendError> {
    let dword = |index, value| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
    };
    Ok(vec![
        (libc::SYS_write, arg_is(0, file as u64)?),
        (libc::SYS_lseek, arg_is(0, file as u64)?),
        (
            libc::SYS_linkat,
            SeccompRule::new(vec![
                dword(0, u64::from(libc::AT_FDCWD as u32))?,
                dword(2, dir as u64)?,
                dword(4, libc::AT_SYMLINK_FOLLOW as u64)?,
            ])?,
        ),
    ])
}

/// Compiles `rules` (system call -> rules, any of which allows it; an empty
/// list allows it always) into a filter that kills the process at any
/// other call. Compile before the last allocation the sandboxed code may
/// make: installing allocates nothing.
pub fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

/// A filter that makes `openat` fail with `EPERM` where the allowlist
/// would kill: glibc's allocator opens /proc/sys/vm/overcommit_memory the
/// first time it shrinks a thread's own heap (any thread but the main
/// one), and copes with a refusal. Install it before the allowlist:
/// filters stack and the stricter answer wins, so every other call still
/// meets the allowlist. The allowlist must allow `openat` (kill beats
/// `EPERM`), and the pair then lets it open nothing.
pub fn refusals() -> Result<BpfProgram, SeccompError> {
    let rules = BTreeMap::from([(libc::SYS_openat, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

/// Installs `program` on the calling thread.
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    Ok(seccompiler::apply_filter(program)?)
}
