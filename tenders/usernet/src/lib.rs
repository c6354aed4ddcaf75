//! # lamina-usernet: networking without root, tap or bridge
//!
//! `lamina run --port 8080:80` (or `--port 5353:53/udp`) gives the unikernel a private Ethernet: the
//! guest's network device is one end of a datagram socketpair, which the
//! tender inherits as `--net:NAME=fd:N` (a real descriptor, so the spt
//! seccomp rules and hvt's reads and writes are the same as for a tap). On
//! the other end the `lamina-usernet` program (this crate's binary, a
//! process of its own, sandboxed by its own seccomp filter) runs a small
//! host-side TCP/IP stack (smoltcp) at [`GATEWAY`]. The stack is not in the
//! tender's address space, which links no smoltcp, as Firecracker keeps
//! network proxies outside the VMM. Each TCP forward (`8080:80`, or
//! `8080:80/tcp`) listens on `127.0.0.1:HOST_PORT` with an ordinary socket;
//! every accepted connection is spliced to a TCP connection from the
//! gateway to [`GUEST`]`:GUEST_PORT`. Each UDP forward (`5353:53/udp`)
//! binds `127.0.0.1:HOST_PORT`; each host client's datagrams go to the
//! guest's port from a gateway port of the client's own, and the guest's
//! replies back to that client (see [`MAX_FLOWS`], [`IDLE_TIMEOUT`],
//! [`MAX_DATAGRAM`]).
//!
//! The network is private: the guest reaches nothing outside it, and only
//! the forwarded ports reach the guest.
//!
//! A daemon that owns a service's address (Jitsu, which summons a
//! unikernel when a client connects) keeps the listening sockets itself,
//! so that a client's handshake completes in the host kernel while nothing
//! runs yet, and hands them over: [`UserNet::adopt`] (`lamina-usernet
//! --listen-fd=N:GUEST[/tcp|/udp]`) serves an inherited socket as a
//! forward, the connections and datagrams already queued on it included.
//! The network then starts before the guest does, so until the guest has
//! answered once it tolerates the boot: a connection to the guest that is
//! refused (the application does not listen yet) or lost is tried again
//! within milliseconds, unseen by the host client, for [`Options::boot_wait`]
//! at most, and no ARP or SYN timeout (a second in smoltcp) is ever waited
//! for (see [`REFUSED_RETRY`], [`LOST_RETRY`], [`NUDGE_MAX`],
//! [`Options::guest_mac`]). [`run_with`] reports [`Event`]s: when the guest
//! first answers (`up`; [`Options::probe`] connects by itself to find out)
//! and how many connections and flows are open (`active N`), from which the
//! daemon learns that the boot worked and when the service is idle.

mod datagram;
mod dial;
mod sandbox;
mod splice;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use datagram::{IDLE_TIMEOUT, MAX_DATAGRAM, MAX_FLOWS};
pub use dial::{DEFAULT_BOOT_WAIT, LOST_RETRY, NUDGE_FIRST, NUDGE_MAX, REFUSED_RETRY};
pub use splice::{run, run_with, Event, Gateway, Options, UserNet};

/// The guest's address on the private network (QEMU's slirp uses the same).
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The tender's side of the private network: the guest's gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Prefix length of the private network.
pub const PREFIX: u8 = 24;
/// The gateway's MAC address (locally administered).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x4c, 0x4d, 0x4e, 0x00, 0x02];
/// The link's MTU.
pub const MTU: usize = 1500;

/// The transport a forward carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default): each host connection is spliced to a connection
    /// from the gateway to the guest.
    Tcp,
    /// UDP: each host client's datagrams go to the guest from a gateway
    /// port of their own, and the guest's replies back to that client.
    Udp,
}

/// A host port forwarded to a guest port: `HOST:GUEST`, `HOST:GUEST/tcp` or
/// `HOST:GUEST/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Port on 127.0.0.1 of the host.
    pub host_port: u16,
    /// Port on the guest.
    pub guest_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// Why a forward specification was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    /// Not `HOST:GUEST[/PROTOCOL]`.
    #[error("port forward '{0}' is not HOST:GUEST[/tcp|/udp], like 8080:80 or 5353:53/udp")]
    Syntax(String),
    /// A port is 0 or too large.
    #[error("port forward '{0}' has a port outside 1-65535")]
    Port(String),
    /// Not `N:GUEST[/PROTOCOL]`.
    #[error("listening socket '{0}' is not N:GUEST[/tcp|/udp], like 3:80 or 4:53/udp")]
    ListenSyntax(String),
    /// A descriptor number that is not a number above 2.
    #[error("listening socket '{0}': expected a descriptor number above 2")]
    Descriptor(String),
    /// A protocol other than tcp or udp.
    #[error("port forward '{0}': unknown protocol '{1}' (tcp or udp)")]
    Protocol(String, String),
}

/// The protocol suffix of `spec` (`/tcp`, `/udp` or none, meaning TCP),
/// and what precedes it.
fn split_protocol(spec: &str) -> Result<(&str, Protocol), ForwardError> {
    match spec.split_once('/') {
        None => Ok((spec, Protocol::Tcp)),
        Some((ports, "tcp")) => Ok((ports, Protocol::Tcp)),
        Some((ports, "udp")) => Ok((ports, Protocol::Udp)),
        Some((_, other)) => Err(ForwardError::Protocol(spec.into(), other.into())),
    }
}

/// A port of `spec`: 1-65535.
fn parse_port(spec: &str, text: &str) -> Result<u16, ForwardError> {
    text.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| ForwardError::Port(spec.into()))
}

impl std::str::FromStr for Forward {
    type Err = ForwardError;

    fn from_str(spec: &str) -> Result<Forward, ForwardError> {
        let (ports, protocol) = split_protocol(spec)?;
        let (host, guest) = ports
            .split_once(':')
            .ok_or_else(|| ForwardError::Syntax(spec.into()))?;
        Ok(Forward {
            host_port: parse_port(spec, host)?,
            guest_port: parse_port(spec, guest)?,
            protocol,
        })
    }
}

/// An inherited socket to serve as a forward: `N:GUEST[/tcp|/udp]`, the
/// value of `lamina-usernet --listen-fd=`. Descriptor N is a listening TCP
/// socket (`/tcp`, the default) or a bound UDP socket (`/udp`) that the
/// process inherited (see [`UserNet::adopt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenFd {
    /// The inherited descriptor.
    pub fd: i32,
    /// Port on the guest.
    pub guest_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl std::str::FromStr for ListenFd {
    type Err = ForwardError;

    fn from_str(spec: &str) -> Result<ListenFd, ForwardError> {
        let (ports, protocol) = split_protocol(spec)?;
        let (fd, guest) = ports
            .split_once(':')
            .ok_or_else(|| ForwardError::ListenSyntax(spec.into()))?;
        Ok(ListenFd {
            fd: fd
                .parse::<i32>()
                .ok()
                .filter(|&fd| fd > 2)
                .ok_or_else(|| ForwardError::Descriptor(spec.into()))?,
            guest_port: parse_port(spec, guest)?,
            protocol,
        })
    }
}

impl std::fmt::Display for Forward {
    /// The specification [`Forward`]'s `FromStr` reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{}:{}/{protocol}", self.host_port, self.guest_port)
    }
}

/// The boot arguments that configure the guest's stack for this network.
pub fn guest_args() -> [String; 2] {
    [
        format!("--ipv4={GUEST}/{PREFIX}"),
        format!("--ipv4-gateway={GATEWAY}"),
    ]
}

/// A socket option of type int: `SO_TYPE`, `SO_ACCEPTCONN`; an error
/// if `fd` is not a socket.
pub(crate) fn socket_option(fd: &impl AsRawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("descriptor {}: not an open socket ({e})", fd.as_raw_fd()),
        ));
    }
    Ok(value)
}

/// Send buffer of each end of the link, in bytes.
const LINK_BUFFER: libc::c_int = 8 << 20;

/// Lets the child that `command` starts inherit `fds` at the same numbers
/// (the ends of a [`socketpair`], listening sockets): they stay
/// close-on-exec in the parent, so nothing else it starts gets them.
pub fn pass_fds(command: &mut std::process::Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and calls only fcntl,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
}

/// The link between a guest and the private network: a SOCK_SEQPACKET
/// socketpair, `(guest end, network end)`, each datagram one Ethernet
/// frame. The guest end becomes the guest's network device (the tender's
/// `--net:NAME=fd:N`), the network end is what [`run`] serves. Both ends
/// are close-on-exec (a child that should have one is given it
/// explicitly) and non-blocking, as a tap is, with send buffers of room
/// for thousands of frames each way instead of the default ~90: a guest
/// reads between its tasks, so bursts must wait, not drop. `lamina run`
/// makes its links with this, as do the tests.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two descriptors into the two-element array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (guest, network) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&guest, &network] {
        // SO_SNDBUFFORCE passes the host's wmem_max for root; otherwise
        // SO_SNDBUF gets what the host allows.
        for option in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: setsockopt reads one c_int from LINK_BUFFER.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&LINK_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
    Ok((guest, network))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse() {
        let tcp = Forward {
            host_port: 8080,
            guest_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!("8080:80".parse(), Ok(tcp));
        assert_eq!("8080:80/tcp".parse(), Ok(tcp));
        let udp = Forward {
            host_port: 5353,
            guest_port: 53,
            protocol: Protocol::Udp,
        };
        assert_eq!("5353:53/udp".parse(), Ok(udp));
        assert_eq!(udp.to_string().parse(), Ok(udp));
        assert_eq!(
            "5353:53/sctp".parse::<Forward>(),
            Err(ForwardError::Protocol("5353:53/sctp".into(), "sctp".into()))
        );
        for bad in ["5353:53/", "5353:53/UDP", "5353:53/udp/tcp", "/udp"] {
            assert!(bad.parse::<Forward>().is_err(), "{bad}");
        }
        assert!(matches!(
            "8080".parse::<Forward>(),
            Err(ForwardError::Syntax(_))
        ));
        assert!(matches!(
            "0:80".parse::<Forward>(),
            Err(ForwardError::Port(_))
        ));
        assert!(matches!(
            "8080:99999".parse::<Forward>(),
            Err(ForwardError::Port(_))
        ));
        assert!(matches!(
            "a:b".parse::<Forward>(),
            Err(ForwardError::Port(_))
        ));
    }

    #[test]
    fn listening_descriptors_parse() {
        assert_eq!(
            "3:80".parse(),
            Ok(ListenFd {
                fd: 3,
                guest_port: 80,
                protocol: Protocol::Tcp
            })
        );
        assert_eq!(
            "7:53/udp".parse(),
            Ok(ListenFd {
                fd: 7,
                guest_port: 53,
                protocol: Protocol::Udp
            })
        );
        assert_eq!(
            "2:80".parse::<ListenFd>(),
            Err(ForwardError::Descriptor("2:80".into()))
        );
        assert_eq!(
            "3".parse::<ListenFd>(),
            Err(ForwardError::ListenSyntax("3".into()))
        );
        for bad in ["x:80", "3:0", "3:80/sctp", "3:", ":80", "-1:80"] {
            assert!(bad.parse::<ListenFd>().is_err(), "{bad}");
        }
    }
}
