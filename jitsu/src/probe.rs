//! "Is the guest up and listening?": a TCP connect from the host to the
//! guest's address and port, tried again until something accepts. The
//! daemon runs it (tap mode) right after starting a tender, to know the
//! boot succeeded and to measure the time to listening.
//!
//! [`Probe`] never blocks, for the daemon's `poll(2)` loop; [`probe`]
//! waits, for tests and tools.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long one attempt waits for an answer before another starts: its
/// SYN may have been lost (the host's neighbour entry for the guest
/// failed, say), and the kernel would retransmit it only after a second.
pub const ATTEMPT: Duration = Duration::from_millis(200);

/// How long after a refusal (the guest is up but not listening yet) the
/// next attempt starts.
pub const RETRY: Duration = Duration::from_millis(2);

/// A connection attempt in progress, renewed until one succeeds.
#[derive(Debug)]
pub struct Probe {
    address: SocketAddrV4,
    /// The attempt in progress; `None` between a refusal and the next.
    socket: Option<OwnedFd>,
    started: Instant,
    /// When the attempt in progress started, or the next one starts.
    attempt_at: Instant,
    attempts: u32,
}

impl Probe {
    /// Starts connecting to `address` (non-blocking).
    pub fn start(address: SocketAddrV4) -> io::Result<Probe> {
        let now = Instant::now();
        Ok(Probe {
            address,
            socket: Some(connect(address)?),
            started: now,
            attempt_at: now,
            attempts: 1,
        })
    }

    /// The descriptor to poll for writability (POLLOUT); `None` while
    /// waiting [`RETRY`] to try again. It changes when an attempt is
    /// renewed: take it again after each [`Probe::poll`].
    pub fn fd(&self) -> Option<RawFd> {
        self.socket.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The address probed.
    pub fn address(&self) -> SocketAddrV4 {
        self.address
    }

    /// How many connections were tried so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Call when [`Probe::fd`] is writable, or at the latest at
    /// [`Probe::next_check`]: `Some(time since start)` once connected (the
    /// connection is closed at once); `None` while waiting. An attempt
    /// refused (the guest is up but not listening yet) or finding nothing
    /// to reach is tried again [`RETRY`] later, one with no answer for
    /// [`ATTEMPT`] at once. Other errors are returned.
    pub fn poll(&mut self) -> io::Result<Option<Duration>> {
        let now = Instant::now();
        let Some(socket) = &self.socket else {
            if now >= self.attempt_at {
                self.renew(now)?;
            }
            return Ok(None);
        };
        match pending_error(socket)? {
            0 if is_connected(socket) => Ok(Some(self.started.elapsed())),
            0 if now >= self.attempt_at + ATTEMPT => {
                self.renew(now)?;
                Ok(None)
            }
            0 => Ok(None),
            libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::ETIMEDOUT => {
                self.socket = None;
                self.attempt_at = now + RETRY;
                Ok(None)
            }
            other => {
                let e = io::Error::from_raw_os_error(other);
                Err(io::Error::new(
                    e.kind(),
                    format!("probing {}: {e}", self.address),
                ))
            }
        }
    }

    /// A new attempt, from `now`.
    fn renew(&mut self, now: Instant) -> io::Result<()> {
        self.socket = Some(connect(self.address)?);
        self.attempt_at = now;
        self.attempts += 1;
        Ok(())
    }

    /// When [`Probe::poll`] must run even if the descriptor stays quiet:
    /// when the next attempt starts, or the current one has waited
    /// [`ATTEMPT`].
    pub fn next_check(&self) -> Instant {
        match self.socket {
            Some(_) => self.attempt_at + ATTEMPT,
            None => self.attempt_at,
        }
    }
}

/// Connects to `address`, waiting at most until `deadline`: the time from
/// the call to the first accepted connection, or an error once the
/// deadline passes.
pub fn probe(address: SocketAddrV4, deadline: Instant) -> io::Result<Duration> {
    let mut probe = Probe::start(address)?;
    loop {
        if let Some(took) = probe.poll()? {
            return Ok(took);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{address} is not listening after {:?} ({} attempts)",
                    probe.started.elapsed(),
                    probe.attempts
                ),
            ));
        }
        let wait = probe
            .next_check()
            .min(deadline)
            .saturating_duration_since(now);
        let mut pollfd = libc::pollfd {
            // A negative descriptor is ignored: poll just sleeps.
            fd: probe.fd().unwrap_or(-1),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: poll reads and writes one pollfd, which lives for the call.
        if unsafe { libc::poll(&mut pollfd, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A non-blocking TCP socket connecting to `address`.
fn connect(address: SocketAddrV4) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let target = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: connect reads one sockaddr_in of the given size.
    let done = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&target as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if done < 0 {
        let e = io::Error::last_os_error();
        // Refusals come back later, through SO_ERROR, like the rest.
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(socket)
}

/// The socket's pending error (SO_ERROR, cleared by reading it).
fn pending_error(socket: &OwnedFd) -> io::Result<libc::c_int> {
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `error`.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(error)
}

/// Whether the socket's connection is established (it has a peer).
fn is_connected(socket: &OwnedFd) -> bool {
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `peer`.
    let done = unsafe {
        libc::getpeername(
            socket.as_raw_fd(),
            (&mut peer as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    done == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    /// A loopback port nothing listens on (the kernel's choice, released).
    fn free_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn a_probe_waits_through_refusals_until_something_listens() {
        let port = free_port();
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let listen_after = Duration::from_millis(60);
        let server = std::thread::spawn(move || {
            std::thread::sleep(listen_after);
            let listener = TcpListener::bind(address).unwrap();
            listener.accept().unwrap();
        });
        let took = probe(address, Instant::now() + Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert!(took >= listen_after, "{took:?}");
        assert!(took < listen_after + Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn a_probe_gives_up_at_its_deadline() {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let start = Instant::now();
        let e = probe(address, start + Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("is not listening"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
