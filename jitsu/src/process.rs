//! Starting the daemon's children (tenders, lamina-usernet) so that they
//! get exactly the descriptors meant for them and never outlive it, and
//! reading their output without blocking the daemon.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Starts `command` in a process group of its own (so a Ctrl-C on the
/// daemon's terminal reaches the daemon, which stops everything in order),
/// killed by the kernel if the daemon dies (`PR_SET_PDEATHSIG`), with
/// `inherit` open in it at the same numbers (they stay close-on-exec in
/// the daemon, so no other child gets them).
pub fn spawn(command: &mut Command, inherit: Vec<RawFd>) -> io::Result<Child> {
    // SAFETY: the closure runs between fork and exec and calls only
    // setpgid, prctl and fcntl, which are async-signal-safe; it allocates
    // nothing. The daemon is single-threaded, so the parent-death signal
    // is tied to the thread that lives as long as the daemon.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    command.spawn()
}

/// Sends `signal` to the process group that [`spawn`] made for `child`
/// (the child and anything it started). The caller has not reaped it yet,
/// so the id is not reused.
pub fn signal_group(child: &Child, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) reads no memory; the group is the unreaped child's.
    unsafe { libc::kill(-pid, signal) };
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl reads no memory.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lines from a child's non-blocking pipe, as they complete.
pub struct Lines<R> {
    source: R,
    partial: Vec<u8>,
    /// The pipe reached its end.
    pub closed: bool,
}

/// A line longer than this is cut (a guest printing without newlines).
const MAX_LINE: usize = 4096;

impl<R: Read + AsRawFd> Lines<R> {
    /// Reads `source`, which must be non-blocking.
    pub fn new(source: R) -> io::Result<Lines<R>> {
        set_nonblocking(source.as_raw_fd())?;
        Ok(Lines {
            source,
            partial: Vec::new(),
            closed: false,
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.source.as_raw_fd()
    }

    /// Every complete line available now (without its newline).
    pub fn read_lines(&mut self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        loop {
            match self.source.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).take(end).collect();
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if self.partial.len() > MAX_LINE || (self.closed && !self.partial.is_empty()) {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        lines
    }
}
