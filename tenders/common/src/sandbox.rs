//! What the tenders' seccomp filters share: the error, the conditions they
//! use (an argument equals a value: a descriptor, a clock, an `arch_prctl`
//! code; an `ioctl` on one descriptor with one request; memory protections
//! without `PROT_EXEC`) and compiling rules into a filter that kills the
//! process at any other call.

use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
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

/// Compiles `rules` as [`compile`] does, behind a check that makes
/// `openat` fail with `EPERM` where the allowlist would kill: glibc's
/// allocator opens /proc/sys/vm/overcommit_memory the first time it
/// shrinks a thread's own heap (any thread but the main one), and copes
/// with a refusal. The check comes first, so `openat` opens nothing
/// whatever the rules say.
///
/// One filter, not a refusals filter stacked before the allowlist: the
/// kernel translates and JIT-compiles each filter it installs. And a call
/// numbered above every rule's is killed at once, as the allowlist would:
/// installing a filter, the kernel runs it for every system call number
/// to find those it always allows (its action cache), walking the
/// allowlist's chain of comparisons to its end for each call it lacks.
pub fn compile_refusing_openat(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
) -> Result<BpfProgram, SeccompError> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGT: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    // struct seccomp_data: nr at 0, arch at 4.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    // AUDIT_ARCH_X86_64: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    let highest = rules.keys().max().map_or(0, |&nr| nr as u32);
    let allowlist = compile(rules)?;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let mut program = vec![
        op(LD_ABS, 0, 0, ARCH),
        // Another architecture: on to the allowlist, which kills.
        op(JEQ, 0, 5, AUDIT_ARCH_X86_64),
        op(LD_ABS, 0, 0, NR),
        op(JEQ, 0, 1, libc::SYS_openat as u32),
        op(RET, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        // Above every rule (x32's numbers too): no rule allows it.
        op(JGT, 0, 1, highest),
        op(RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ];
    program.extend(allowlist);
    Ok(program)
}

/// Installs `program` on the calling thread.
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    Ok(seccompiler::apply_filter(program)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `struct seccomp_data` as a filter reads it: 32-bit words.
    fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u32> {
        let mut words = vec![nr, arch, 0, 0];
        for arg in args {
            words.extend([arg as u32, (arg >> 32) as u32]);
        }
        words
    }

    /// Runs classic BPF `program` (the instructions seccompiler and
    /// [`compile_refusing_openat`] emit) on `data`: the filter's return
    /// value.
    fn run(program: &[sock_filter], data: &[u32]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let op = &program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { op.jt } else { op.jf });
            match op.code {
                0x20 => acc = data[op.k as usize / 4],
                0x54 => acc &= op.k,
                0x05 => pc += op.k as usize,
                0x15 => pc += jump(acc == op.k),
                0x25 => pc += jump(acc > op.k),
                0x35 => pc += jump(acc >= op.k),
                0x06 => return op.k,
                code => panic!("instruction {code:#x} not modelled"),
            }
        }
    }

    /// The kernel's verdict for stacked filters: the most restrictive.
    fn stricter(a: u32, b: u32) -> u32 {
        const ACTION_FULL: u32 = 0xffff_0000;
        // KILL_PROCESS is 0x80000000, which read as signed is the lowest.
        let rank = |v: u32| (v & ACTION_FULL) as i32;
        if rank(a) <= rank(b) {
            a
        } else {
            b
        }
    }

    #[test]
    fn one_filter_refusing_openat_decides_as_the_refusals_filter_stacked_on_the_allowlist() {
        let mut rules = BTreeMap::new();
        rules.insert(libc::SYS_read, vec![arg_is(0, 7).unwrap()]);
        rules.insert(libc::SYS_ioctl, vec![ioctl_is(5, 0xae80).unwrap()]);
        rules.insert(libc::SYS_mmap, vec![without_exec().unwrap()]);
        rules.insert(libc::SYS_exit_group, Vec::new());
        // Stacked, the allowlist had to let openat through to the
        // refusals' EPERM (kill wins over EPERM); merged, it need not.
        let merged = compile_refusing_openat(rules.clone()).unwrap();
        rules.insert(libc::SYS_openat, Vec::new());
        let allowlist = compile(rules).unwrap();
        let refusals: BpfProgram = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_openat, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            TargetArch::x86_64,
        )
        .unwrap()
        .try_into()
        .unwrap();
        const X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
        const AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
        const X32: u32 = 0x4000_0000;
        let arg_sets = [
            [0; 6],
            [7, 0, 0, 0, 0, 0],
            [5, 0xae80, 0, 0, 0, 0],
            [5, 0xae81, 0, 0, 0, 0],
            [0, 4096, 3, 0, 0, 0],
            [0, 4096, 7, 0, 0, 0],
            [u64::MAX; 6],
        ];
        let mut allowed = 0;
        for arch in [X86_64, AARCH64, 0] {
            for nr in (0..512).chain(X32..X32 + 512).chain([u32::MAX]) {
                for args in arg_sets {
                    let data = data(arch, nr, args);
                    let stacked = stricter(run(&refusals, &data), run(&allowlist, &data));
                    assert_eq!(
                        run(&merged, &data),
                        stacked,
                        "arch {arch:#x} nr {nr:#x} args {args:x?}"
                    );
                    allowed += usize::from(stacked == 0x7fff_0000);
                }
            }
        }
        // The comparison saw every verdict: allowed, refused, killed.
        assert!(allowed > 0);
        let openat = data(X86_64, libc::SYS_openat as u32, [0; 6]);
        assert_eq!(run(&merged, &openat), 0x0005_0000 | libc::EPERM as u32);
        assert_eq!(run(&merged, &data(X86_64, 1, [0; 6])), 0x8000_0000);
    }
}
