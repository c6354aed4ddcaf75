//! TCP and UDP sockets of [`NetStack`] as the `Stack` traits.

use crate::config::{MAX_ACK_DELAY_MS, MAX_TCP_BACKLOG, MAX_TCP_BUFFER, MIN_TCP_BUFFER};
use crate::driver::{Core, NetStack};
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::net::{IpAddr, SocketAddr};
use core::task::Poll;
use core::task::Waker;
use lamina_core::device::{
    DnsServers, NetError, Stack, TcpListener, TcpRead, TcpStream, TcpWrite, UdpSocket,
};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

fn endpoint(addr: SocketAddr) -> IpEndpoint {
    IpEndpoint::new(addr.ip().into(), addr.port())
}

fn std_addr(endpoint: IpEndpoint) -> SocketAddr {
    SocketAddr::new(IpAddr::from(endpoint.addr), endpoint.port)
}

fn listen_endpoint(addr: SocketAddr) -> IpListenEndpoint {
    let address = if addr.ip().is_unspecified() {
        None
    } else {
        Some(addr.ip().into())
    };
    IpListenEndpoint {
        addr: address,
        port: addr.port(),
    }
}

/// A TCP socket sized by the memory budget (`--tcp-memory`), or `None`
/// past the budget, which the caller turns into back-pressure (SYNs
/// dropped, connect refused with `NoBuffers`). [`buffer_sizes`] says how
/// big.
fn new_tcp_socket(core: &Core) -> Option<tcp::Socket<'static>> {
    let args = &core.args;
    let used = core.tcp_memory.get();
    let (rx_size, tx_size) = buffer_sizes(
        used,
        args.tcp_memory,
        (args.tcp_rx_buffer, args.tcp_tx_buffer),
        least_buffers(core.mtu),
    )?;
    core.tcp_memory.set(used + rx_size + tx_size);
    let rx = tcp::SocketBuffer::new(vec![0u8; rx_size]);
    let tx = tcp::SocketBuffer::new(vec![0u8; tx_size]);
    let mut socket = tcp::Socket::new(rx, tx);
    // Request/response protocols are the common case: send at once.
    socket.set_nagle_enabled(false);
    // smoltcp's Duration::from_millis multiplies by 1000: keep it in range
    // for arguments built in code (the parser refuses more than 500 ms).
    let ack_delay = args.tcp_ack_delay_ms.min(MAX_ACK_DELAY_MS);
    socket.set_ack_delay((ack_delay > 0).then(|| smoltcp::time::Duration::from_millis(ack_delay)));
    Some(socket)
}

/// Datagrams a UDP socket holds each way before the stack drops more. A
/// DNS server's clients keep hundreds of small queries in flight (dnsperf
/// -q 100 from four clients): with 64 a burst overflowed the socket before
/// the server's task ran. The slots are small (a few dozen bytes each); the
/// bytes of the datagrams share [`UDP_BUFFER`].
const UDP_DATAGRAMS: usize = 512;

/// Bytes of datagrams a UDP socket holds each way: the largest datagram.
const UDP_BUFFER: usize = 65536;

/// How many times the configured sizes a connection gets while the
/// connections' buffers fit in an eighth of the budget: 512 KiB each way at
/// the defaults. A window of 64 KiB held hvt's bulk echo to about 0.75x
/// Linux's (the ring adds a hop to every round trip the window must cover).
/// Once hvt moved large segments (about 1 GB/s each way), 256 KiB held it
/// again: bench/net.py's bulk echo, medians of 5 interleaved runs, 832 MB/s
/// with 256 KiB, 1051 with 512 KiB, 1059 with 1 MiB (see [`buffer_sizes`]).
const BULK_FACTOR: usize = 8;

/// What a connection gets per direction past the first quarter of the budget.
const RESPONSE_TCP_BUFFER: usize = 4096;

/// The smallest tier's receive and send buffers on a link of `mtu` bytes.
///
/// The send buffer holds more than one full-sized segment (the MTU less
/// 40 bytes of IPv4 and TCP headers): a Linux peer acknowledges at once
/// only when more than one segment's worth is unacknowledged, else after
/// its delayed-ACK timer (40 ms) once a keep-alive connection is
/// interactive. With 1 KiB the send window never held more than one
/// segment, and every response longer than 1 KiB waited for that timer:
/// with 500 idle connections open first (which took the larger tiers),
/// the website served 1,135 req/s to wrk -c50 instead of 47,000, on spt
/// and hvt alike; with 1.5 KiB, 26,889.
///
/// The receive buffer takes what is left of 2 KiB, as the 1 KiB each way
/// did before (10,000 connections still fit in a 64 MiB guest), and at
/// least 512 bytes: a request larger than it arrives in several windows,
/// each reopened as soon as the application reads.
pub(crate) fn least_buffers(mtu: usize) -> (usize, usize) {
    let segment = mtu.saturating_sub(40).max(536);
    let tx = (segment + 1).next_multiple_of(512).max(MIN_TCP_BUFFER);
    let rx = (2 * MIN_TCP_BUFFER)
        .saturating_sub(tx)
        .max(LEAST_RECEIVE_BUFFER);
    (rx, tx)
}

/// The smallest receive buffer (window) a connection gets.
const LEAST_RECEIVE_BUFFER: usize = 512;

/// The receive and send buffer sizes of a new connection, given the bytes
/// of TCP buffers in use, the budget, the configured sizes and the
/// smallest tier's ([`least_buffers`]):
/// - [`BULK_FACTOR`] times the configured sizes while the connections'
///   buffers fit in an eighth of the budget (the first 3 connections at
///   the defaults): a bulk transfer, usually one of few connections, gets
///   a window that covers the path's round trip (smoltcp scales the window
///   it announces by the receive buffer's size);
/// - the configured sizes while they fit in a quarter of the budget (32
///   more at the defaults);
/// - then [`RESPONSE_TCP_BUFFER`] (4 KiB, or the configured size if that
///   is smaller) while they fit in another 32nd: enough for a typical
///   response to go out in one burst (without this tier, wrk -c100 saw a
///   p90 of 36 ms when the next tier was 1 KiB each way: see
///   [`least_buffers`]);
/// - then the smallest, 512 bytes to receive and 1.5 KiB to send on an
///   Ethernet link ([`least_buffers`]), until the budget is spent: many
///   mostly idle connections (10,000 fit in a 64 MiB guest).
///
/// smoltcp cannot resize a socket's buffers (nor change the window scale
/// once the handshake has agreed it), so the size is chosen once, when the
/// socket is made; the larger tiers come first because the budget is then
/// free, and they come back as connections close.
fn buffer_sizes(
    used: usize,
    budget: usize,
    (rx, tx): (usize, usize),
    (least_rx, least_tx): (usize, usize),
) -> Option<(usize, usize)> {
    // The parser refuses sizes outside these bounds (NetArgs::check); a
    // program that builds NetArgs itself gets them clamped, so that
    // smoltcp's assertion on a receive buffer above 1 GiB cannot fire and
    // the sums below cannot overflow.
    let buffer = |size: usize| size.clamp(MIN_TCP_BUFFER, MAX_TCP_BUFFER);
    let (rx, tx) = (buffer(rx), buffer(tx));
    let fits = |rx: usize, tx: usize, limit: usize| used.saturating_add(rx + tx) <= limit;
    let bulk = |size: usize| buffer(size.saturating_mul(BULK_FACTOR));
    let (rx_bulk, tx_bulk) = (bulk(rx), bulk(tx));
    let (rx_mid, tx_mid) = (rx.min(RESPONSE_TCP_BUFFER), tx.min(RESPONSE_TCP_BUFFER));
    if fits(rx_bulk, tx_bulk, budget / 8) {
        Some((rx_bulk, tx_bulk))
    } else if fits(rx, tx, budget / 4) {
        Some((rx, tx))
    } else if fits(rx_mid, tx_mid, budget / 4 + budget / 32) {
        Some((rx_mid, tx_mid))
    } else if fits(least_rx.min(rx), least_tx.min(tx), budget) {
        Some((least_rx.min(rx), least_tx.min(tx)))
    } else {
        None
    }
}

impl NetStack {
    /// Whether a listener already holds `at`'s port on `at`'s address (or
    /// on every address).
    fn listening_on(&self, at: IpListenEndpoint) -> bool {
        self.core
            .listeners
            .borrow()
            .iter()
            .filter_map(|q| q.upgrade())
            .any(|q| {
                q.at.port == at.port
                    && (q.at.addr.is_none() || at.addr.is_none() || q.at.addr == at.addr)
            })
    }

    /// An ephemeral port no listener holds, for a listen on port 0 (the
    /// same range `connect` draws its source ports from; a listener and a
    /// connection may share a port, as in BSD sockets).
    fn free_listen_port(&self, addr: Option<smoltcp::wire::IpAddress>) -> Result<u16, NetError> {
        // The range has 16384 ports; give up after trying each once.
        for _ in 0..16384 {
            let port = self.core.ephemeral_port();
            if !self.listening_on(IpListenEndpoint { addr, port }) {
                return Ok(port);
            }
        }
        Err(NetError::AddressInUse)
    }
}

impl Stack for NetStack {
    type TcpListener = NetTcpListener;
    type TcpStream = NetTcpStream;
    type UdpSocket = NetUdpSocket;

    /// `--dns` if given, else the servers of the DHCP lease (option 6).
    fn dns_servers(&self) -> Vec<SocketAddr> {
        match &self.core.args.dns {
            Some(servers) => servers.0.clone(),
            None => self
                .core
                .dhcp_dns
                .borrow()
                .iter()
                .map(|&ip| SocketAddr::new(IpAddr::V4(ip), DnsServers::PORT))
                .collect(),
        }
    }

    async fn tcp_listen(&self, addr: SocketAddr) -> Result<NetTcpListener, NetError> {
        let mut at = listen_endpoint(addr);
        if at.port == 0 {
            at.port = self.free_listen_port(at.addr)?;
        }
        let queue = Rc::new(AcceptQueue {
            at,
            idle: RefCell::new(Vec::new()),
            pending: RefCell::new(VecDeque::new()),
            backlog: self.core.args.tcp_backlog.clamp(1, MAX_TCP_BACKLOG),
            waiter: RefCell::new(None),
        });
        if self.listening_on(at) {
            return Err(NetError::AddressInUse);
        }
        queue.refill(&self.core, &mut self.core.sockets.borrow_mut());
        if queue.idle.borrow().is_empty() {
            return Err(NetError::InvalidAddress);
        }
        self.core.listeners.borrow_mut().push(Rc::downgrade(&queue));
        Ok(NetTcpListener {
            core: self.core.clone(),
            queue,
            local: SocketAddr::new(addr.ip(), at.port),
        })
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> Result<NetTcpStream, NetError> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(NetError::InvalidAddress);
        }
        if addr.is_ipv4() {
            // Before DHCP has answered there is no source address: wait.
            poll_fn(|cx| {
                if self.core.ipv4.get().is_some() {
                    Poll::Ready(())
                } else {
                    self.core
                        .address_waiters
                        .borrow_mut()
                        .push(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
        let mut socket = new_tcp_socket(&self.core).ok_or(NetError::NoBuffers)?;
        let port = self.core.ephemeral_port();
        socket
            .connect(self.core.iface.borrow_mut().context(), endpoint(addr), port)
            .map_err(|_| NetError::InvalidAddress)?;
        let handle = self.core.sockets.borrow_mut().add(socket);
        let stream = NetTcpStream::new(self.core.clone(), handle, addr);
        self.core.kick();
        poll_fn(|cx| {
            stream.connection.socket(|socket| match socket.state() {
                tcp::State::Established | tcp::State::CloseWait => Poll::Ready(Ok(())),
                tcp::State::Closed => Poll::Ready(Err(NetError::ConnectionRefused)),
                _ => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await?;
        Ok(stream)
    }

    async fn udp_bind(&self, addr: SocketAddr) -> Result<NetUdpSocket, NetError> {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_DATAGRAMS],
                vec![0u8; UDP_BUFFER],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        let mut at = listen_endpoint(addr);
        let mut sockets = self.core.sockets.borrow_mut();
        if at.port == 0 {
            // The range has 16384 ports; give up after trying each once.
            at.port = (0..16384)
                .map(|_| self.core.ephemeral_port())
                .find(|&port| !udp_bound(&sockets, IpListenEndpoint { port, ..at }))
                .ok_or(NetError::AddressInUse)?;
        } else if udp_bound(&sockets, at) {
            return Err(NetError::AddressInUse);
        }
        socket.bind(at).map_err(|_| NetError::InvalidAddress)?;
        let handle = sockets.add(socket);
        drop(sockets);
        let local = SocketAddr::new(addr.ip(), at.port);
        Ok(NetUdpSocket {
            core: self.core.clone(),
            handle,
            local,
        })
    }
}

/// Whether a UDP socket is bound to `at`'s port on `at`'s address (or on
/// every address): smoltcp would let two sockets share it and hand each
/// datagram to the first.
fn udp_bound(sockets: &SocketSet<'static>, at: IpListenEndpoint) -> bool {
    sockets.iter().any(|(_, socket)| match socket {
        smoltcp::socket::Socket::Udp(udp) => {
            let bound = udp.endpoint();
            bound.port == at.port
                && (bound.addr.is_none() || at.addr.is_none() || bound.addr == at.addr)
        }
        _ => false,
    })
}

/// The sockets of one listening port: a few idle ones in LISTEN, and the
/// connections they took (handshaking or established) waiting for
/// `accept`. The driver refills it after every packet; once `backlog`
/// connections wait, new SYNs find no listener and are refused.
pub(crate) struct AcceptQueue {
    at: IpListenEndpoint,
    idle: RefCell<Vec<SocketHandle>>,
    pending: RefCell<VecDeque<SocketHandle>>,
    backlog: usize,
    waiter: RefCell<Option<Waker>>,
}

/// Seconds a connection may take to finish its handshake.
const HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Listening sockets kept ready: enough for the SYNs of one packet burst
/// between two refills (refills happen after every packet).
const IDLE_LISTENERS: usize = 2;

impl AcceptQueue {
    pub(crate) fn is_full(&self) -> bool {
        self.pending.borrow().len() >= self.backlog
    }

    pub(crate) fn port(&self) -> u16 {
        self.at.port
    }

    pub(crate) fn refill(&self, core: &Core, sockets: &mut SocketSet<'static>) {
        let mut idle = self.idle.borrow_mut();
        let mut pending = self.pending.borrow_mut();
        let before = pending.len();
        // A handshake reset by the peer returns its socket to LISTEN (RFC
        // 793); a failed one ends CLOSED. Neither is a connection to accept.
        pending.retain(|&handle| match sockets.get::<tcp::Socket>(handle).state() {
            tcp::State::Listen => {
                idle.push(handle);
                false
            }
            tcp::State::Closed | tcp::State::TimeWait => {
                core.remove_tcp(sockets, handle);
                false
            }
            _ => true,
        });
        while idle.len() > IDLE_LISTENERS {
            if let Some(extra) = idle.pop() {
                core.remove_tcp(sockets, extra);
            }
        }
        let before = before.min(pending.len());
        idle.retain(|&handle| {
            if sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
                true
            } else {
                pending.push_back(handle);
                false
            }
        });
        while idle.len() < IDLE_LISTENERS
            && pending.len() + idle.len() < self.backlog.saturating_add(IDLE_LISTENERS)
        {
            let Some(mut socket) = new_tcp_socket(core) else {
                break; // out of buffer memory: SYNs wait (back-pressure)
            };
            // A handshake that does not finish in time frees its place in the
            // backlog (SYN floods); accept clears the limit again.
            socket.set_timeout(Some(smoltcp::time::Duration::from_secs(
                HANDSHAKE_TIMEOUT_SECS,
            )));
            if socket.listen(self.at).is_err() {
                core.release_tcp(&socket);
                break;
            }
            idle.push(sockets.add(socket));
        }
        if pending.len() > before {
            if let Some(waker) = self.waiter.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// A listening TCP port.
pub struct NetTcpListener {
    core: Rc<Core>,
    queue: Rc<AcceptQueue>,
    local: SocketAddr,
}

impl TcpListener for NetTcpListener {
    type Stream = NetTcpStream;

    async fn accept(&self) -> Result<(NetTcpStream, SocketAddr), NetError> {
        let core = &self.core;
        poll_fn(|cx| {
            let mut sockets = core.sockets.borrow_mut();
            let mut pending = self.queue.pending.borrow_mut();
            let mut index = 0;
            while index < pending.len() {
                let handle = pending[index];
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    tcp::State::Established | tcp::State::CloseWait => {
                        // The handshake limit ends with the handshake.
                        socket.set_timeout(None);
                        let peer = socket
                            .remote_endpoint()
                            .map(std_addr)
                            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                        pending.remove(index);
                        let stream = NetTcpStream::new(core.clone(), handle, peer);
                        return Poll::Ready(Ok((stream, peer)));
                    }
                    // A handshake that failed (RST, timeout): forget it.
                    tcp::State::Closed | tcp::State::TimeWait => {
                        pending.remove(index);
                        core.remove_tcp(&mut sockets, handle);
                    }
                    _ => {
                        socket.register_recv_waker(cx.waker());
                        index += 1;
                    }
                }
            }
            *self.queue.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for NetTcpListener {
    fn drop(&mut self) {
        let mut sockets = self.core.sockets.borrow_mut();
        for handle in self
            .queue
            .idle
            .borrow_mut()
            .drain(..)
            .chain(self.queue.pending.borrow_mut().drain(..))
        {
            sockets.get_mut::<tcp::Socket>(handle).abort();
            self.core.orphans.borrow_mut().push(handle);
        }
        self.core.kick();
    }
}

/// One TCP connection's socket in the stack, shared by a stream's halves.
/// Dropping it closes the connection (RST if unread data remains, as BSD
/// sockets do) and leaves the socket to the driver until it is closed.
struct Connection {
    core: Rc<Core>,
    slot: Rc<crate::park::Slot>,
    peer: SocketAddr,
}

impl Connection {
    fn new(core: Rc<Core>, handle: SocketHandle, peer: SocketAddr) -> Self {
        let slot = core.parking.track(handle, core.round_at.get());
        Connection { core, slot, peer }
    }

    /// Runs `f` on the connection's socket, in the stack's set again if it
    /// was parked (the application touched it: it is not idle).
    fn socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut sockets = self.core.sockets.borrow_mut();
        self.core
            .parking
            .touch(&self.slot, self.core.round_at.get(), &mut sockets);
        f(sockets.get_mut::<tcp::Socket>(self.slot.handle()))
    }

    /// Reads into `buf`: the smoltcp socket's receive side and its receive
    /// waker, which nothing else uses once the connection is established,
    /// so a read and a write can wait at once.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = poll_fn(|cx| {
            self.socket(|socket| match socket.recv_slice(buf) {
                Ok(0) if socket.may_recv() => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                // FIN received: end of stream.
                Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(tcp::RecvError::InvalidState) => Poll::Ready(Err(NetError::ConnectionReset)),
            })
        })
        .await?;
        // Reading made room: the driver may open the window.
        self.core.kick();
        Ok(n)
    }

    /// Writes from `buf`: the send side and its waker (see [`Connection::read`]).
    async fn write(&self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = poll_fn(|cx| self.socket(|socket| Self::send(socket, buf, cx))).await?;
        self.core.kick();
        Ok(n)
    }

    /// One attempt of [`Connection::write`] on its socket.
    fn send(
        socket: &mut tcp::Socket<'static>,
        buf: &[u8],
        cx: &mut core::task::Context<'_>,
    ) -> Poll<Result<usize, NetError>> {
        if !socket.may_send() {
            return Poll::Ready(Err(if socket.state() == tcp::State::Closed {
                NetError::ConnectionReset
            } else {
                NetError::Closed
            }));
        }
        match socket.send_slice(buf) {
            Ok(0) => {
                // Send buffer full: wait for the peer's ACKs (back-pressure).
                socket.register_send_waker(cx.waker());
                Poll::Pending
            }
            Ok(n) => {
                if lamina_core::trace::enabled() {
                    crate::trace::buffered(socket);
                }
                Poll::Ready(Ok(n))
            }
            Err(_) => Poll::Ready(Err(NetError::Closed)),
        }
    }

    /// Sends FIN after the buffered data (smoltcp's `close` closes the
    /// sending direction only; a second call changes nothing).
    fn shutdown(&self) {
        self.socket(|socket| socket.close());
        self.core.kick();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.socket(|socket| {
            if socket.can_recv() {
                socket.abort(); // unread data: reset, as BSD sockets do
            } else {
                socket.close();
            }
        });
        self.core.orphans.borrow_mut().push(self.slot.handle());
        self.core.kick();
    }
}

/// A TCP connection.
pub struct NetTcpStream {
    connection: Connection,
}

impl NetTcpStream {
    fn new(core: Rc<Core>, handle: SocketHandle, peer: SocketAddr) -> Self {
        NetTcpStream {
            connection: Connection::new(core, handle, peer),
        }
    }
}

impl TcpRead for NetTcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.connection.read(buf).await
    }

    fn peer_addr(&self) -> SocketAddr {
        self.connection.peer
    }
}

impl TcpWrite for NetTcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.connection.write(buf).await
    }

    async fn shutdown(&mut self) -> Result<(), NetError> {
        self.connection.shutdown();
        Ok(())
    }
}

impl TcpStream for NetTcpStream {
    type ReadHalf = NetTcpReadHalf;
    type WriteHalf = NetTcpWriteHalf;

    /// Both halves share the one socket in the stack: smoltcp keeps a waker
    /// for each direction, so the halves wait independently.
    fn into_split(self) -> (NetTcpReadHalf, NetTcpWriteHalf) {
        let connection = Rc::new(self.connection);
        (
            NetTcpReadHalf {
                connection: connection.clone(),
            },
            NetTcpWriteHalf { connection },
        )
    }
}

/// The receiving half of a [`NetTcpStream`].
pub struct NetTcpReadHalf {
    connection: Rc<Connection>,
}

impl TcpRead for NetTcpReadHalf {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.connection.read(buf).await
    }

    fn peer_addr(&self) -> SocketAddr {
        self.connection.peer
    }
}

/// The sending half of a [`NetTcpStream`]; dropping it sends FIN.
pub struct NetTcpWriteHalf {
    connection: Rc<Connection>,
}

impl TcpWrite for NetTcpWriteHalf {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.connection.write(buf).await
    }

    async fn shutdown(&mut self) -> Result<(), NetError> {
        self.connection.shutdown();
        Ok(())
    }
}

impl Drop for NetTcpWriteHalf {
    fn drop(&mut self) {
        self.connection.shutdown();
    }
}

/// A bound UDP socket.
pub struct NetUdpSocket {
    core: Rc<Core>,
    handle: SocketHandle,
    local: SocketAddr,
}

impl UdpSocket for NetUdpSocket {
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<(), NetError> {
        // The stack does not fragment: a datagram must fit one IP packet.
        let headers = if addr.is_ipv4() { 20 + 8 } else { 40 + 8 };
        if buf.len() + headers > self.core.mtu {
            return Err(NetError::TooLarge);
        }
        poll_fn(|cx| {
            let mut sockets = self.core.sockets.borrow_mut();
            let socket = sockets.get_mut::<udp::Socket>(self.handle);
            match socket.send_slice(buf, endpoint(addr)) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(udp::SendError::BufferFull) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::SendError::Unaddressable) => Poll::Ready(Err(NetError::InvalidAddress)),
            }
        })
        .await?;
        self.core.kick();
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), NetError> {
        poll_fn(|cx| {
            let mut sockets = self.core.sockets.borrow_mut();
            let socket = sockets.get_mut::<udp::Socket>(self.handle);
            match socket.recv() {
                // A datagram longer than `buf` is truncated to it, as BSD
                // sockets do (smoltcp's `recv_slice` would drop it instead).
                Ok((datagram, meta)) => {
                    let n = datagram.len().min(buf.len());
                    buf[..n].copy_from_slice(&datagram[..n]);
                    Poll::Ready(Ok((n, std_addr(meta.endpoint))))
                }
                Err(udp::RecvError::Exhausted) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::RecvError::Truncated) => Poll::Ready(Err(NetError::TooLarge)),
            }
        })
        .await
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for NetUdpSocket {
    fn drop(&mut self) {
        self.core.sockets.borrow_mut().remove(self.handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens connections until the budget refuses one; returns the sizes given.
    fn open_until_full(budget: usize, rx: usize, tx: usize) -> alloc::vec::Vec<(usize, usize)> {
        let (mut used, mut given) = (0, alloc::vec::Vec::new());
        while let Some((r, t)) = buffer_sizes(used, budget, (rx, tx), least_buffers(1500)) {
            used += r + t;
            assert!(
                used <= budget,
                "over budget after {} connections",
                given.len()
            );
            given.push((r, t));
        }
        given
    }

    #[test]
    fn buffers_shrink_in_steps_that_still_hold_a_response() {
        // The defaults: 64 KiB each way, 28 MiB.
        let given = open_until_full(29_360_128, 65536, 65536);
        let count = |sizes: (usize, usize)| given.iter().filter(|&&s| s == sizes).count();
        assert_eq!(
            count((524288, 524288)),
            3,
            "an eighth of the budget at 512 KiB"
        );
        assert_eq!(
            count((65536, 65536)),
            32,
            "the rest of the quarter at 64 KiB"
        );
        assert_eq!(count((4096, 4096)), 112, "a 32nd at 4 KiB");
        assert_eq!(
            count((524288, 524288))
                + count((65536, 65536))
                + count((4096, 4096))
                + count((512, 1536)),
            given.len()
        );
        // Sizes never grow back while connections stay open.
        assert!(given
            .windows(2)
            .all(|w| w[1].0 <= w[0].0 && w[1].1 <= w[0].1));
        assert!(
            given.len() >= 10_000,
            "only {} connections fit",
            given.len()
        );
    }

    #[test]
    fn configured_sizes_below_the_middle_tier_are_kept() {
        let given = open_until_full(1 << 20, 2048, 1024);
        // An eighth of 1 MiB holds five connections at eight times the sizes.
        let bulk = given.iter().take_while(|&&s| s == (16384, 8192)).count();
        assert_eq!(bulk, 5);
        assert_eq!(given[bulk], (2048, 1024));
        assert!(given[bulk..].iter().all(|&(r, t)| r <= 2048 && t <= 1024));
        // Out-of-range sizes from code that builds NetArgs itself are
        // clamped, the bulk tier's too.
        let least = least_buffers(1500);
        assert_eq!(
            buffer_sizes(0, usize::MAX, (MAX_TCP_BUFFER, 1), least),
            Some((MAX_TCP_BUFFER, BULK_FACTOR * MIN_TCP_BUFFER))
        );
        let eighth_used = usize::MAX / 8;
        assert_eq!(
            buffer_sizes(eighth_used, usize::MAX, (1, usize::MAX), least),
            Some((MIN_TCP_BUFFER, MAX_TCP_BUFFER))
        );
        assert_eq!(
            buffer_sizes(eighth_used, usize::MAX, (1, 1), least),
            Some((MIN_TCP_BUFFER, MIN_TCP_BUFFER))
        );
        // Configured sizes below the smallest tier's are what it gives.
        assert_eq!(
            buffer_sizes(usize::MAX - 3000, usize::MAX, (1, 1), least),
            Some((512, MIN_TCP_BUFFER))
        );
        assert_eq!(
            buffer_sizes(usize::MAX - 10, usize::MAX - 5, (1, 1), least),
            None
        );
    }

    #[test]
    fn the_smallest_send_buffer_holds_more_than_a_full_segment() {
        // Ethernet: a 1460-byte segment and more; 2 KiB in all, as before.
        assert_eq!(least_buffers(1500), (512, 1536));
        for mtu in [576, 1280, 1500, 4000, 9000, 65535] {
            let (rx, tx) = least_buffers(mtu);
            assert!(
                tx > mtu - 40,
                "MTU {mtu}: {tx} bytes hold one segment at most"
            );
            assert!(rx >= 512, "MTU {mtu}: a {rx}-byte window");
        }
        // A nonsense MTU gives sane sizes, not a panic.
        assert_eq!(least_buffers(0), (1024, 1024));
    }
}
