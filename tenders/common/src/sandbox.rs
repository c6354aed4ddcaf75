//! What the tenders' seccomp filters share: the error, the one kind of
//! condition they use (an argument equals a value: a descriptor, a clock,
//! an `arch_prctl` code) and compiling rules into a filter that kills the
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

/// Installs `program` on the calling thread.
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    Ok(seccompiler::apply_filter(program)?)
}
