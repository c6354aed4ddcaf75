//! The seccomp filter of the event loop's thread.

use std::io;

/// The calls the event loop makes, and nothing else: it faces a guest's
/// traffic, so it is sandboxed as a tender is. It cannot open sockets or
/// files, connect anywhere or execute anything; it accepts on its listeners
/// and moves bytes on descriptors it has. Other calls fail with EPERM
/// rather than kill: glibc's allocator opens /proc/sys/vm/overcommit_memory
/// when it trims, and copes with a refusal.
pub(crate) fn sandbox() -> io::Result<()> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let allowed = [
        libc::SYS_poll,
        libc::SYS_ppoll,
        // A poll stopped by SIGSTOP (Jitsu's pause) resumes through
        // restart_syscall after SIGCONT.
        libc::SYS_restart_syscall,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_accept4,
        libc::SYS_accept,
        libc::SYS_close,
        libc::SYS_shutdown,
        libc::SYS_fcntl,
        libc::SYS_setsockopt,
        libc::SYS_clock_gettime,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_exit,
        // The lamina-usernet process ends when the link closes.
        libc::SYS_exit_group,
    ];
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        allowed.iter().map(|&nr| (nr, vec![])).collect();
    // The allocator maps and protects memory, never executable memory: the
    // guest's W^X stays intact whatever happens to this thread.
    let no_exec = || -> io::Result<Vec<SeccompRule>> {
        let condition = SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )
        .map_err(io::Error::other)?;
        Ok(vec![
            SeccompRule::new(vec![condition]).map_err(io::Error::other)?
        ])
    };
    rules.insert(libc::SYS_mmap, no_exec()?);
    rules.insert(libc::SYS_mprotect, no_exec()?);
    // Only FIONBIO (std's set_nonblocking on an accepted connection): no
    // tap, KVM or terminal request, whatever descriptor the thread finds.
    let fionbio =
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::FIONBIO)
            .map_err(io::Error::other)?;
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(vec![fionbio]).map_err(io::Error::other)?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(io::Error::other)?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(io::Error::other)?;
    seccompiler::apply_filter(&program).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sandbox_refuses_files_sockets_and_executable_memory() {
        let outcome = std::thread::spawn(|| {
            super::sandbox().unwrap();
            let file = std::fs::File::open("/etc/hostname").map_err(|e| e.kind());
            let socket = std::net::TcpStream::connect("127.0.0.1:9").map_err(|e| e.kind());
            // SAFETY: asks for an anonymous executable mapping, which the
            // filter must refuse; nothing is mapped on refusal.
            let exec = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            (file, socket, exec == libc::MAP_FAILED)
        })
        .join()
        .unwrap();
        assert_eq!(outcome.0.err(), Some(std::io::ErrorKind::PermissionDenied));
        assert_eq!(outcome.1.err(), Some(std::io::ErrorKind::PermissionDenied));
        assert!(outcome.2, "an executable mapping was allowed");
    }

    #[test]
    fn the_sandbox_allows_only_fionbio_among_ioctls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let outcome = std::thread::spawn(move || {
            super::sandbox().unwrap();
            let nonblocking = listener.set_nonblocking(true).map_err(|e| e.kind());
            let ioctl = |request: libc::c_ulong| {
                let mut bytes = [0u8; 64];
                // SAFETY: the buffer is larger than any of these requests'
                // argument; the filter answers before the kernel looks.
                let rc = unsafe {
                    libc::ioctl(
                        std::os::fd::AsRawFd::as_raw_fd(&listener),
                        request,
                        bytes.as_mut_ptr(),
                    )
                };
                (rc == -1).then(std::io::Error::last_os_error)
            };
            let tap = ioctl(libc::TUNSETIFF);
            let kvm = ioctl(0xae01); // KVM_CREATE_VM
            (nonblocking, tap, kvm)
        })
        .join()
        .unwrap();
        assert_eq!(outcome.0, Ok(()));
        for refused in [outcome.1, outcome.2] {
            assert_eq!(refused.and_then(|e| e.raw_os_error()), Some(libc::EPERM));
        }
    }
}
