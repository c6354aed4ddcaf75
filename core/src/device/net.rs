use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

/// Why a network operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The local address is already in use.
    AddressInUse,
    /// The address cannot be used here (wrong family, not local, port 0 to connect).
    InvalidAddress,
    /// The peer refused the connection (RST in reply to SYN, ICMP unreachable).
    ConnectionRefused,
    /// The peer reset an established connection.
    ConnectionReset,
    /// The connection was closed for writing; no more data can be sent.
    Closed,
    /// No route or no link to the destination.
    Unreachable,
    /// The operation did not finish within the stack's limit.
    TimedOut,
    /// The stack has no room for another socket or buffer (back-pressure).
    NoBuffers,
    /// A frame or datagram is larger than the link or socket allows.
    TooLarge,
    /// The device or host reported an error.
    Io,
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NetError::AddressInUse => "address in use",
            NetError::InvalidAddress => "invalid address",
            NetError::ConnectionRefused => "connection refused",
            NetError::ConnectionReset => "connection reset by peer",
            NetError::Closed => "connection closed",
            NetError::Unreachable => "network unreachable",
            NetError::TimedOut => "timed out",
            NetError::NoBuffers => "out of socket buffers",
            NetError::TooLarge => "message too large",
            NetError::Io => "network device I/O error",
        })
    }
}

/// A network interface that moves raw Ethernet frames: the layer a TCP/IP
/// stack is built on.
///
/// Implementations must:
/// - deliver whole frames (destination MAC first, no FCS), one per call;
/// - never block the CPU: [`Netif::receive`] waits for a frame by yielding;
/// - drop, not queue without bound, frames the guest does not read in time.
pub trait Netif {
    /// The interface's hardware address.
    fn mac(&self) -> [u8; 6];
    /// Largest IP packet (Ethernet payload) the link carries, usually 1500.
    fn mtu(&self) -> usize;
    /// Waits for the next frame and copies it into `buf`, returning its
    /// length. `buf` may be of any size: a frame longer than it is dropped
    /// and reported as [`NetError::TooLarge`] (a buffer of MTU + 14 bytes,
    /// or [`Offloads::MAX_LARGE_FRAME`] with `large_receive`, takes every
    /// frame).
    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError>;
    /// Returns the next frame if one is waiting, without yielding; `buf` as
    /// for [`Netif::receive`].
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError>;
    /// Sends one frame without waiting. Like Ethernet, the link may drop a
    /// frame it has no room for (the host's queue is full): that is not an
    /// error, and protocols above retransmit. A frame longer than MTU + 14
    /// is [`NetError::TooLarge`].
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError>;
    /// The work this device does for the stack above it; none by default.
    fn offloads(&self) -> Offloads {
        Offloads::default()
    }
    /// Sends the frames [`Netif::transmit`] held back to send them together
    /// (a device that coalesces segments); the stack calls it after each
    /// round of transmits. Nothing by default.
    fn flush(&self) {}
}

/// What a [`Netif`] does so that the stack above need not.
///
/// ```
/// use lamina_core::device::Offloads;
/// let plain = Offloads::default();
/// assert!(!plain.checksum && !plain.large_receive && !plain.parallel_io);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// TCP and UDP checksums are the device's: it drops received frames
    /// whose checksum is wrong (or has the host vouch for them) and fills
    /// the checksum of frames it transmits, so the stack neither verifies
    /// nor computes them.
    pub checksum: bool,
    /// Received frames may be longer than the MTU, up to
    /// [`Offloads::MAX_LARGE_FRAME`]: TCP segments the host has not cut to
    /// the MTU (its segmentation or receive offload).
    pub large_receive: bool,
    /// Frames reach the host and come from it through another thread
    /// while the stack runs (hvt's I/O thread), not in the stack's own
    /// calls: the stack then takes a burst of frames in a few at a time,
    /// so that its first answers leave while the rest is read.
    pub parallel_io: bool,
}

impl Offloads {
    /// The longest frame a device with `large_receive` delivers: an IP
    /// packet of 64 KiB behind an Ethernet header.
    pub const MAX_LARGE_FRAME: usize = 14 + 65535;
}

/// A TCP/UDP stack: the host's sockets on unix, Lamina's own stack over a
/// [`Netif`] on the bare-metal targets.
///
/// An unspecified address (`0.0.0.0`, `::`) in `tcp_listen` or `udp_bind`
/// means every address the stack owns; a target may narrow it (the unix
/// target binds its `--bind` address, loopback by default).
///
/// Implementations must:
/// - make `tcp_listen` on port 0 pick a free port, which
///   [`TcpListener::local_addr`] reports; listening on a port already
///   listened on is [`NetError::AddressInUse`];
/// - refuse `tcp_connect` to port 0 or to an unspecified address with
///   [`NetError::InvalidAddress`], and report a peer that answers the SYN
///   with RST as [`NetError::ConnectionRefused`];
/// - give an accepted stream the same peer address that `accept` returns.
pub trait Stack {
    /// A listening TCP socket.
    type TcpListener: TcpListener<Stream = Self::TcpStream>;
    /// A connected TCP byte stream.
    type TcpStream: TcpStream;
    /// A bound UDP socket.
    type UdpSocket: UdpSocket;
    /// Listens for TCP connections on `addr`.
    async fn tcp_listen(&self, addr: SocketAddr) -> Result<Self::TcpListener, NetError>;
    /// Opens a TCP connection to `addr`.
    async fn tcp_connect(&self, addr: SocketAddr) -> Result<Self::TcpStream, NetError>;
    /// Binds a UDP socket to `addr`.
    async fn udp_bind(&self, addr: SocketAddr) -> Result<Self::UdpSocket, NetError>;
    /// The DNS servers this stack was told to use, first choice first, each
    /// with its port: a `--dns` boot argument if there is one, else what
    /// configured the stack (DHCP option 6 on Lamina's stack,
    /// `/etc/resolv.conf` on unix). Empty when there are none, as by
    /// default. A resolver asks before each query: a new DHCP lease may
    /// change them.
    fn dns_servers(&self) -> Vec<SocketAddr> {
        Vec::new()
    }
}

/// A list of DNS servers as a boot argument, `--dns=ADDR[,ADDR...]`: each an
/// IP address with an optional port (`10.0.0.1`, `10.0.0.1:5353`,
/// `fd00::1`, `[fd00::1]:5353`; [`DnsServers::PORT`] when none is given),
/// at most [`DnsServers::MAX`] of them.
///
/// ```
/// use lamina_core::args::ArgValue;
/// use lamina_core::device::DnsServers;
/// let servers = DnsServers::parse_arg("10.0.0.1,[fd00::1]:5353").unwrap();
/// assert_eq!(servers.0, ["10.0.0.1:53".parse().unwrap(), "[fd00::1]:5353".parse().unwrap()]);
/// assert!(DnsServers::parse_arg("10.0.0.1:0").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsServers(pub Vec<SocketAddr>);

impl DnsServers {
    /// The most servers a list holds (as `/etc/resolv.conf`'s MAXNS).
    pub const MAX: usize = 3;
    /// The port of a server given without one.
    pub const PORT: u16 = 53;

    /// One server: an address, with or without a port.
    pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
        let server = match text.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, Self::PORT),
            Err(_) => text
                .parse::<SocketAddr>()
                .map_err(|_| format!("'{text}' is not an IP address, ADDR:PORT or [IPV6]:PORT"))?,
        };
        let ip = server.ip();
        if ip.is_unspecified() || ip.is_multicast() || server.port() == 0 {
            return Err(format!(
                "{server} cannot be a DNS server (unspecified or multicast address, or port 0)"
            ));
        }
        Ok(server)
    }
}

impl crate::args::ArgValue for DnsServers {
    fn parse_arg(s: &str) -> Result<Self, String> {
        let servers = s
            .split(',')
            .map(|one| Self::parse_server(one.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if servers.len() > Self::MAX {
            return Err(format!("at most {} servers", Self::MAX));
        }
        Ok(DnsServers(servers))
    }
}

/// A listening TCP socket. Dropping it stops listening.
pub trait TcpListener {
    /// The stream type of accepted connections.
    type Stream: TcpStream;
    /// Waits for the next connection. Errors on one incoming connection are
    /// not fatal: the listener keeps listening.
    async fn accept(&self) -> Result<(Self::Stream, SocketAddr), NetError>;
    /// The address the listener is bound to (with the port chosen, if it was 0).
    fn local_addr(&self) -> SocketAddr;
}

/// A connected TCP byte stream. Dropping it closes the connection (FIN, or
/// RST if unread data remains).
///
/// Implementations must:
/// - deliver bytes in order, without loss or duplication;
/// - let `read` return fewer bytes than asked for (a partial read), at least
///   one, and return `Ok(0)` exactly at end of stream (the peer sent FIN),
///   and again on every later read; a connection the peer reset reads as
///   [`NetError::ConnectionReset`];
/// - let `write` accept fewer bytes than offered, at least one, and wait while
///   the send buffer is full (back-pressure), never buffering without bound;
/// - after [`TcpWrite::shutdown`], refuse further writes with
///   [`NetError::Closed`] while reads go on until the peer's FIN;
/// - return `Ok(0)` at once for an empty buffer, from `read` and `write`.
///
/// A stream is full-duplex: [`TcpStream::into_split`] gives a read half and a
/// write half that separate tasks use at once.
pub trait TcpStream: TcpRead + TcpWrite {
    /// The receiving half of a split stream.
    type ReadHalf: TcpRead + 'static;
    /// The sending half of a split stream.
    type WriteHalf: TcpWrite + 'static;

    /// Splits the stream into a read half and a write half, without copying
    /// and without a lock: each half owns its direction of the one
    /// connection, so one task may wait in [`TcpRead::read`] while another
    /// waits in [`TcpWrite::write`] (a TLS record layer, a proxy copying both
    /// ways, a hand-off of an accepted connection). The halves are owned
    /// (`'static`) so that each can move into a task of its own.
    ///
    /// - Shutting down the write half sends FIN after the buffered data; the
    ///   read half keeps reading until the peer's FIN.
    /// - Dropping the write half shuts the sending direction down, as
    ///   [`TcpWrite::shutdown`] does.
    /// - Dropping the read half alone sends nothing; the connection closes
    ///   when both halves are gone, as dropping the stream would (RST if
    ///   unread data remains).
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf);
}

/// The receiving direction of a TCP connection: a [`TcpStream`] or its read
/// half. The guarantees are [`TcpStream`]'s.
pub trait TcpRead {
    /// Reads at least one byte into `buf`, or returns 0 at end of stream.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError>;
    /// The remote end's address.
    fn peer_addr(&self) -> SocketAddr;

    /// Fills all of `buf`; [`NetError::Closed`] if the stream ends first.
    async fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            match self.read(buf).await? {
                0 => return Err(NetError::Closed),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }
}

/// The sending direction of a TCP connection: a [`TcpStream`] or its write
/// half. The guarantees are [`TcpStream`]'s.
pub trait TcpWrite {
    /// Writes at least one byte from `buf` and returns how many.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError>;
    /// Closes the sending direction (sends FIN) after the buffered data.
    /// Shutting down twice is not an error.
    async fn shutdown(&mut self) -> Result<(), NetError>;

    /// Writes all of `buf`.
    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(NetError::Closed);
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// A bound UDP socket.
///
/// Implementations must:
/// - deliver datagrams whole or not at all, one per `recv_from`, keeping
///   their boundaries; a datagram longer than the receive buffer is
///   truncated to it (the rest is lost), as with BSD sockets;
/// - refuse with [`NetError::TooLarge`] a datagram larger than they can
///   send: more than 65507 bytes, or, on a stack that does not fragment
///   (lamina-net), more than the link's MTU less the IP and UDP headers
///   (1472 bytes over IPv4 on a 1500-byte link). Datagrams up to that size
///   are sent;
/// - give a bound socket its port alone: binding a port in use is
///   [`NetError::AddressInUse`], binding port 0 picks a free port, which
///   [`UdpSocket::local_addr`] reports.
///
/// UDP may lose datagrams; nothing here promises delivery.
pub trait UdpSocket {
    /// Sends one datagram to `addr`.
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<(), NetError>;
    /// Waits for a datagram; returns its length (at most `buf.len()`) and sender.
    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError>;
    /// The address the socket is bound to.
    fn local_addr(&self) -> SocketAddr;
}
