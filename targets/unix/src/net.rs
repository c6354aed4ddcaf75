//! The Stack trait on the host's sockets.

use crate::reactor::{Async, Reactor};
use lamina_core::device::{
    DnsServers, NetError, Stack, TcpListener, TcpRead, TcpStream, TcpWrite, UdpSocket,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::rc::Rc;

/// Maps a host error onto the trait's error.
pub(crate) fn net_error(e: io::Error) -> NetError {
    use io::ErrorKind::*;
    match e.kind() {
        AddrInUse => NetError::AddressInUse,
        AddrNotAvailable | InvalidInput => NetError::InvalidAddress,
        ConnectionRefused => NetError::ConnectionRefused,
        ConnectionReset | ConnectionAborted => NetError::ConnectionReset,
        BrokenPipe | NotConnected => NetError::Closed,
        TimedOut => NetError::TimedOut,
        HostUnreachable | NetworkUnreachable => NetError::Unreachable,
        OutOfMemory => NetError::NoBuffers,
        _ => match e.raw_os_error() {
            Some(libc::EMSGSIZE) => NetError::TooLarge,
            Some(libc::ENOBUFS) | Some(libc::EMFILE) | Some(libc::ENFILE) => NetError::NoBuffers,
            _ => NetError::Io,
        },
    }
}

/// The host's TCP/UDP stack. Listening on an unspecified address binds the
/// `--bind` address instead (loopback by default), so that a development
/// build is not reachable from the network by accident.
#[derive(Clone)]
pub struct HostStack {
    reactor: Rc<Reactor>,
    bind: IpAddr,
    /// `--dns`; without it, the host's resolver configuration.
    dns: Option<Vec<SocketAddr>>,
}

impl HostStack {
    /// A stack binding unspecified addresses to `bind`, reporting the DNS
    /// servers of `/etc/resolv.conf`.
    pub fn new(reactor: Rc<Reactor>, bind: IpAddr) -> Self {
        HostStack {
            reactor,
            bind,
            dns: None,
        }
    }

    /// The same stack reporting `servers` as its DNS servers instead.
    pub fn with_dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.dns = Some(servers);
        self
    }

    fn local(&self, addr: SocketAddr) -> SocketAddr {
        if !addr.ip().is_unspecified() {
            return addr;
        }
        match (addr.ip(), self.bind) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if v4.is_loopback() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) if v6.is_loopback() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
            }
            _ => SocketAddr::new(self.bind, addr.port()),
        }
    }
}

/// The servers of `nameserver ADDR` lines in resolv.conf(5) text, at
/// port 53, at most [`DnsServers::MAX`]; an address that does not parse
/// (an IPv6 one with a `%zone`) is skipped.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, DnsServers::PORT))
        .take(DnsServers::MAX)
        .collect()
}

fn socket(addr: &SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        ty.nonblocking().cloexec(),
        Some(protocol),
    )?;
    Ok(socket)
}

impl Stack for HostStack {
    type TcpListener = HostTcpListener;
    type TcpStream = HostTcpStream;
    type UdpSocket = HostUdpSocket;

    /// `--dns` if given, else the `nameserver` lines of `/etc/resolv.conf`
    /// (read at each call, as the host's resolver does when it changes).
    fn dns_servers(&self) -> Vec<SocketAddr> {
        match &self.dns {
            Some(servers) => servers.clone(),
            None => std::fs::read_to_string("/etc/resolv.conf")
                .map(|text| resolv_conf_servers(&text))
                .unwrap_or_default(),
        }
    }

    async fn tcp_listen(&self, addr: SocketAddr) -> Result<HostTcpListener, NetError> {
        let addr = self.local(addr);
        let socket = socket(&addr, Type::STREAM, Protocol::TCP).map_err(net_error)?;
        socket.set_reuse_address(true).map_err(net_error)?;
        socket.bind(&addr.into()).map_err(net_error)?;
        socket.listen(4096).map_err(net_error)?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let io = Async::new(std::net::TcpListener::from(socket), self.reactor.clone())
            .map_err(net_error)?;
        Ok(HostTcpListener {
            io,
            local,
            reactor: self.reactor.clone(),
        })
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> Result<HostTcpStream, NetError> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(NetError::InvalidAddress);
        }
        let socket = socket(&addr, Type::STREAM, Protocol::TCP).map_err(net_error)?;
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(net_error(e)),
        }
        let stream = std::net::TcpStream::from(socket);
        let io = Async::new(stream, self.reactor.clone()).map_err(net_error)?;
        // Writable means the handshake finished, one way or the other.
        io.write_with(|s| match s.take_error()? {
            Some(e) => Err(e),
            None => s.peer_addr().map(|_| ()).map_err(|e| {
                if e.kind() == io::ErrorKind::NotConnected {
                    io::ErrorKind::WouldBlock.into()
                } else {
                    e
                }
            }),
        })
        .await
        .map_err(net_error)?;
        HostTcpStream::new(io, addr)
    }

    async fn udp_bind(&self, addr: SocketAddr) -> Result<HostUdpSocket, NetError> {
        let addr = self.local(addr);
        let socket = socket(&addr, Type::DGRAM, Protocol::UDP).map_err(net_error)?;
        socket.bind(&addr.into()).map_err(net_error)?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        let io = Async::new(std::net::UdpSocket::from(socket), self.reactor.clone())
            .map_err(net_error)?;
        Ok(HostUdpSocket { io, local })
    }
}

/// A listening host socket.
pub struct HostTcpListener {
    io: Async<std::net::TcpListener>,
    local: SocketAddr,
    reactor: Rc<Reactor>,
}

impl TcpListener for HostTcpListener {
    type Stream = HostTcpStream;

    async fn accept(&self) -> Result<(HostTcpStream, SocketAddr), NetError> {
        loop {
            let accepted = self.io.read_with(|l| l.accept()).await;
            match accepted {
                Ok((stream, peer)) => {
                    let setup = stream
                        .set_nonblocking(true)
                        .and_then(|()| Async::new(stream, self.reactor.clone()));
                    match setup {
                        Ok(io) => return Ok((HostTcpStream::new(io, peer)?, peer)),
                        Err(e) => {
                            log::warn!("accept: could not set up a connection from {peer}: {e}")
                        }
                    }
                }
                // Out of descriptors: report it (back-pressure) rather than spin.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    return Err(NetError::NoBuffers)
                }
                // The connection died in the queue: not the listener's fault.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// A connected host TCP socket (Nagle's algorithm off: writes go out at once).
pub struct HostTcpStream {
    io: Async<std::net::TcpStream>,
    peer: SocketAddr,
}

impl HostTcpStream {
    fn new(io: Async<std::net::TcpStream>, peer: SocketAddr) -> Result<Self, NetError> {
        io.get_ref().set_nodelay(true).map_err(net_error)?;
        Ok(HostTcpStream { io, peer })
    }
}

impl TcpRead for HostTcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        read(&self.io, buf).await
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl TcpWrite for HostTcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        write(&self.io, buf).await
    }

    async fn shutdown(&mut self) -> Result<(), NetError> {
        shutdown(&self.io)
    }
}

impl TcpStream for HostTcpStream {
    type ReadHalf = HostTcpReadHalf;
    type WriteHalf = HostTcpWriteHalf;

    /// Both halves share the one socket: the reactor keeps a waiter for
    /// each direction, so they wait independently.
    fn into_split(self) -> (HostTcpReadHalf, HostTcpWriteHalf) {
        let io = Rc::new(self.io);
        let read = HostTcpReadHalf {
            io: io.clone(),
            peer: self.peer,
        };
        (read, HostTcpWriteHalf { io })
    }
}

async fn read(io: &Async<std::net::TcpStream>, buf: &mut [u8]) -> Result<usize, NetError> {
    if buf.is_empty() {
        return Ok(0);
    }
    io.read_with(|mut s| s.read(buf)).await.map_err(net_error)
}

async fn write(io: &Async<std::net::TcpStream>, buf: &[u8]) -> Result<usize, NetError> {
    if buf.is_empty() {
        return Ok(0);
    }
    io.write_with(|mut s| s.write(buf)).await.map_err(net_error)
}

fn shutdown(io: &Async<std::net::TcpStream>) -> Result<(), NetError> {
    match io.get_ref().shutdown(Shutdown::Write) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        Err(e) => Err(net_error(e)),
    }
}

/// The receiving half of a [`HostTcpStream`].
pub struct HostTcpReadHalf {
    io: Rc<Async<std::net::TcpStream>>,
    peer: SocketAddr,
}

impl TcpRead for HostTcpReadHalf {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        read(&self.io, buf).await
    }

    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// The sending half of a [`HostTcpStream`]; dropping it sends FIN.
pub struct HostTcpWriteHalf {
    io: Rc<Async<std::net::TcpStream>>,
}

impl TcpWrite for HostTcpWriteHalf {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        write(&self.io, buf).await
    }

    async fn shutdown(&mut self) -> Result<(), NetError> {
        shutdown(&self.io)
    }
}

impl Drop for HostTcpWriteHalf {
    fn drop(&mut self) {
        if let Err(e) = shutdown(&self.io) {
            log::debug!("shutdown of a dropped write half: {e}");
        }
    }
}

/// A bound host UDP socket.
pub struct HostUdpSocket {
    io: Async<std::net::UdpSocket>,
    local: SocketAddr,
}

impl UdpSocket for HostUdpSocket {
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<(), NetError> {
        self.io
            .write_with(|s| s.send_to(buf, addr))
            .await
            .map(|_| ())
            .map_err(net_error)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        self.io
            .read_with(|s| s.recv_from(buf))
            .await
            .map_err(net_error)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_gives_its_nameservers_at_port_53() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.1\n  nameserver\t::1\n\
                    nameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions ndots:1\n";
        assert_eq!(
            resolv_conf_servers(text),
            [
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap(),
                "10.0.0.2:53".parse().unwrap(),
            ]
        );
        assert!(resolv_conf_servers("nameserver\n").is_empty());
    }
}
