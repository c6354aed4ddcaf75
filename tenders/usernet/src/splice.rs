//! The event loop: one thread, `poll(2)` over the link, the listeners, the
//! forwarded connections and the UDP forwards' sockets, smoltcp in between.

use crate::datagram::Datagrams;
use crate::{Forward, Protocol, GATEWAY, GATEWAY_MAC, GUEST, MTU, PREFIX};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Bytes buffered per direction per connection, in smoltcp and here.
const BUFFER: usize = 256 * 1024;

/// Frames held for the guest while its end of the link is full.
const BACKLOG_FRAMES: usize = 8192;

/// smoltcp's device over the tender's end of the socketpair.
struct Link {
    fd: OwnedFd,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Frames the guest has not had room for yet, oldest first: the guest
    /// reads only between its own tasks, so bursts wait here rather than
    /// being lost.
    backlog: std::collections::VecDeque<Vec<u8>>,
}

impl Link {
    /// Sends held frames until the link is full again.
    fn flush(&mut self) {
        while let Some(frame) = self.backlog.front() {
            if !send_frame(self.fd.as_raw_fd(), frame) {
                return;
            }
            self.backlog.pop_front();
        }
    }
}

/// Sends one frame; false if the link is full.
fn send_frame(fd: RawFd, frame: &[u8]) -> bool {
    // SAFETY: send reads frame.len() bytes from frame.
    let n = unsafe {
        libc::send(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a> {
    fd: RawFd,
    buf: &'a mut Vec<u8>,
    backlog: &'a mut std::collections::VecDeque<Vec<u8>>,
}

impl phy::Device for Link {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        self.rx.resize(MTU + 14, 0);
        // SAFETY: recv writes at most rx.len() bytes into rx.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.rx.as_mut_ptr().cast(),
                self.rx.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            return None;
        }
        Some((
            Rx(&self.rx[..n as usize]),
            Tx {
                fd: self.fd.as_raw_fd(),
                buf: &mut self.tx,
                backlog: &mut self.backlog,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            fd: self.fd.as_raw_fd(),
            buf: &mut self.tx,
            backlog: &mut self.backlog,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        caps
    }
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.resize(len, 0);
        let result = f(self.buf);
        // In order: behind held frames, or held itself if the link is full.
        // Past the backlog the frame is dropped, as a busy link would.
        if (!self.backlog.is_empty() || !send_frame(self.fd, self.buf))
            && self.backlog.len() < BACKLOG_FRAMES
        {
            self.backlog.push_back(self.buf.clone());
        }
        result
    }
}

/// One forwarded connection: a host socket spliced to a smoltcp socket.
struct Splice {
    host: TcpStream,
    handle: SocketHandle,
    /// From the host, not yet taken by smoltcp.
    to_guest: Vec<u8>,
    /// From the guest, not yet written to the host.
    to_host: Vec<u8>,
    host_eof: bool,
    host_shut: bool,
}

/// The bound forwards, ready to run once the guest's link exists.
pub struct UserNet {
    listeners: Vec<(Forward, TcpListener)>,
    datagrams: Vec<(Forward, UdpSocket)>,
    /// Each forward's host address, in the order given.
    addrs: Vec<SocketAddr>,
}

impl UserNet {
    /// Listens on (TCP) or binds (UDP) 127.0.0.1 for every forward now, so
    /// that a port in use is reported before the guest boots.
    pub fn bind(forwards: &[Forward]) -> io::Result<UserNet> {
        let mut listeners = Vec::new();
        let mut datagrams = Vec::new();
        let mut addrs = Vec::new();
        for forward in forwards {
            if forward.protocol == Protocol::Udp {
                let socket = Datagrams::bind(forward)?;
                addrs.push(socket.local_addr()?);
                datagrams.push((*forward, socket));
                continue;
            }
            let listener = TcpListener::bind(("127.0.0.1", forward.host_port)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on 127.0.0.1:{}: {e}", forward.host_port),
                )
            })?;
            listener.set_nonblocking(true)?;
            addrs.push(listener.local_addr()?);
            listeners.push((*forward, listener));
        }
        Ok(UserNet {
            listeners,
            datagrams,
            addrs,
        })
    }

    /// Serves `socket`, which the caller already has (a daemon that owns
    /// the service's address, `--listen-fd=N:GUEST`), as a forward to the
    /// guest's `guest_port`: a listening TCP socket for [`Protocol::Tcp`], a
    /// bound UDP socket for [`Protocol::Udp`]; anything else is refused
    /// with the reason. It is served exactly as the sockets
    /// [`UserNet::bind`] makes are, including the connections already
    /// waiting in its accept queue or the datagrams already queued on it.
    /// It becomes non-blocking (a flag the open file shares with every
    /// copy of the descriptor, the daemon's too) and close-on-exec.
    /// Returns the address it is bound to.
    pub fn adopt(
        &mut self,
        socket: OwnedFd,
        guest_port: u16,
        protocol: Protocol,
    ) -> io::Result<SocketAddr> {
        if guest_port == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "guest port 0 (expected 1-65535)",
            ));
        }
        let (domain, kind, listening) = (
            crate::socket_option(&socket, libc::SO_DOMAIN)?,
            crate::socket_option(&socket, libc::SO_TYPE)?,
            crate::socket_option(&socket, libc::SO_ACCEPTCONN)?,
        );
        let fd = socket.as_raw_fd();
        let wrong = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd}: {what}"),
            ))
        };
        if domain != libc::AF_INET && domain != libc::AF_INET6 {
            return wrong("not an IPv4 or IPv6 socket");
        }
        match protocol {
            Protocol::Tcp if kind != libc::SOCK_STREAM => {
                return wrong("not a TCP socket (for a /tcp forward)")
            }
            Protocol::Tcp if listening == 0 => {
                return wrong("a TCP socket that is not listening (call listen first)")
            }
            Protocol::Udp if kind != libc::SOCK_DGRAM => {
                return wrong("not a UDP socket (for a /udp forward)")
            }
            _ => {}
        }
        // SAFETY: fcntl on a descriptor this function owns reads no memory.
        let cloexec = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        if cloexec != 0 {
            return Err(io::Error::last_os_error());
        }
        let forward = |addr: SocketAddr| Forward {
            host_port: addr.port(),
            guest_port,
            protocol,
        };
        let addr = match protocol {
            Protocol::Tcp => {
                let listener = TcpListener::from(socket);
                let addr = listener.local_addr()?;
                listener.set_nonblocking(true)?;
                self.listeners.push((forward(addr), listener));
                addr
            }
            Protocol::Udp => {
                let udp = UdpSocket::from(socket);
                let addr = udp.local_addr()?;
                if addr.port() == 0 {
                    return wrong("a UDP socket that is not bound (call bind first)");
                }
                udp.set_nonblocking(true)?;
                self.datagrams.push((forward(addr), udp));
                addr
            }
        };
        self.addrs.push(addr);
        Ok(addr)
    }

    /// Where each forward listens, in the order given to [`UserNet::bind`]
    /// (a forward from host port 0 listens on a port the kernel picked).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.addrs.clone())
    }
}

/// smoltcp's clock: `elapsed` since the network started.
fn instant(elapsed: Duration) -> Instant {
    Instant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
}

/// The calls the event loop makes, and nothing else: it faces a guest's
/// traffic, so it is sandboxed as a tender is. It cannot open sockets or
/// files, connect anywhere or execute anything; it accepts on its listeners
/// and moves bytes on descriptors it has. Other calls fail with EPERM
/// rather than kill: glibc's allocator opens /proc/sys/vm/overcommit_memory
/// when it trims, and copes with a refusal.
fn sandbox() -> io::Result<()> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let allowed = [
        libc::SYS_poll,
        libc::SYS_ppoll,
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

/// Runs the private network until the guest's end of the link closes. The
/// calling thread is sandboxed first (see `sandbox`): the lamina-usernet
/// process's only thread, or a thread of its own in a test.
pub fn run(net: UserNet, link: OwnedFd) -> io::Result<()> {
    let start = std::time::Instant::now();
    let seed = start.elapsed().as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    sandbox()?;
    let mut gateway = Gateway::new(net, link, seed, Duration::ZERO);
    loop {
        gateway.serve(start.elapsed())?;
        if !gateway.wait(start.elapsed())? {
            return Ok(()); // the guest is gone
        }
    }
}

/// The private network's state between wake-ups: the gateway's smoltcp
/// interface (its ARP cache, its TCP connections to the guest), the
/// forwards' listeners, the spliced host connections and the UDP flows. [`run`] drives it
/// with the real clock; the `usernet` fuzz target drives [`Gateway::serve`]
/// with frames of its own on the guest's end of the link.
pub struct Gateway {
    listeners: Vec<(Forward, TcpListener)>,
    device: Link,
    iface: Interface,
    sockets: SocketSet<'static>,
    splices: Vec<Splice>,
    datagrams: Datagrams,
    next_port: u16,
}

impl Gateway {
    /// The network on `link` (the network end of a [`crate::socketpair`]),
    /// with smoltcp's random numbers (initial sequence numbers, ports)
    /// from `random_seed`, at time `now` since the network started.
    pub fn new(net: UserNet, link: OwnedFd, random_seed: u64, now: Duration) -> Gateway {
        let mut device = Link {
            fd: link,
            rx: Vec::new(),
            tx: Vec::new(),
            backlog: Default::default(),
        };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        config.random_seed = random_seed;
        let mut iface = Interface::new(config, &mut device, instant(now));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(GATEWAY), PREFIX));
        });
        Gateway {
            listeners: net.listeners,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            splices: Vec::new(),
            datagrams: Datagrams::new(net.datagrams),
            next_port: 40000,
        }
    }

    /// Serves once, without waiting, at time `now` since the network
    /// started: accepts the host connections waiting on the listeners,
    /// takes every frame the guest has sent (Ethernet, ARP, IPv4, ICMP,
    /// TCP, UDP, all parsed by smoltcp here), moves bytes between the host
    /// connections and the guest's and datagrams between the host clients
    /// and the guest, and sends the frames that result.
    pub fn serve(&mut self, now: Duration) -> io::Result<()> {
        // New host connections: each opens a connection to the guest.
        for (forward, listener) in &self.listeners {
            while let Ok((host, _)) = listener.accept() {
                host.set_nonblocking(true)?;
                host.set_nodelay(true).ok();
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                );
                socket.set_nagle_enabled(false);
                self.next_port = if self.next_port == u16::MAX {
                    40000
                } else {
                    self.next_port + 1
                };
                let remote = IpEndpoint::new(IpAddress::Ipv4(GUEST), forward.guest_port);
                if socket
                    .connect(self.iface.context(), remote, self.next_port)
                    .is_err()
                {
                    continue;
                }
                let handle = self.sockets.add(socket);
                self.splices.push(Splice {
                    host,
                    handle,
                    to_guest: Vec::new(),
                    to_host: Vec::new(),
                    host_eof: false,
                    host_shut: false,
                });
            }
        }
        self.device.flush();
        self.datagrams.expire(&mut self.sockets, now);
        // Until nothing moves: frames in, bytes across, frames out.
        let (iface, device, sockets) = (&mut self.iface, &mut self.device, &mut self.sockets);
        for _ in 0..64 {
            let mut moved = false;
            self.datagrams.take_from_host(sockets, now, &mut moved);
            let ingress = iface.poll(instant(now), device, sockets);
            self.splices.retain_mut(|s| pump(s, sockets, &mut moved));
            self.datagrams.answer_host(sockets, now, &mut moved);
            if !moved && ingress == smoltcp::iface::PollResult::None {
                break;
            }
        }
        iface.poll(instant(now), device, sockets);
        Ok(())
    }

    /// UDP client flows open now.
    pub fn udp_flows(&self) -> usize {
        self.datagrams.flows()
    }

    /// Datagrams from host clients dropped so far: larger than a frame of
    /// the link holds, or their flow's buffer full.
    pub fn udp_dropped(&self) -> u64 {
        self.datagrams.dropped
    }

    /// Sleeps until the link, a listener or a connection can move, or
    /// smoltcp's next timer; false once the guest's end of the link is
    /// closed.
    fn wait(&mut self, now: Duration) -> io::Result<bool> {
        let link_events = if self.device.backlog.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLIN | libc::POLLOUT
        };
        let mut fds = vec![libc::pollfd {
            fd: self.device.fd.as_raw_fd(),
            events: link_events,
            revents: 0,
        }];
        let listening = self.listeners.iter().map(|(_, l)| l.as_raw_fd());
        fds.extend(
            listening
                .chain(self.datagrams.fds())
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }),
        );
        for s in &self.splices {
            let mut events = 0;
            if !s.host_eof && s.to_guest.len() < BUFFER {
                events |= libc::POLLIN;
            }
            if !s.to_host.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: s.host.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let delay = self
            .iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| d.total_millis().min(100) as i32)
            .unwrap_or(100);
        // SAFETY: poll reads and writes the pollfd array it is given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, delay) };
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        Ok(fds[0].revents & (libc::POLLHUP | libc::POLLERR) == 0)
    }
}

/// Moves bytes both ways for one connection, setting `moved` if any moved;
/// false when the connection is finished.
fn pump(s: &mut Splice, sockets: &mut SocketSet<'static>, moved: &mut bool) -> bool {
    let socket = sockets.get_mut::<tcp::Socket>(s.handle);
    // Host to guest.
    if !s.host_eof && s.to_guest.len() < BUFFER {
        let mut buf = [0u8; 16384];
        match s.host.read(&mut buf) {
            Ok(0) => s.host_eof = true,
            Ok(n) => {
                s.to_guest.extend_from_slice(&buf[..n]);
                *moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                socket.abort();
                return false;
            }
        }
    }
    if !s.to_guest.is_empty() && socket.may_send() {
        if let Ok(n) = socket.send_slice(&s.to_guest) {
            s.to_guest.drain(..n);
            *moved |= n > 0;
        }
    }
    if s.host_eof && s.to_guest.is_empty() && socket.may_send() {
        socket.close();
    }
    // Guest to host.
    if s.to_host.len() < BUFFER {
        let mut buf = [0u8; 16384];
        if let Ok(n) = socket.recv_slice(&mut buf) {
            s.to_host.extend_from_slice(&buf[..n]);
            *moved |= n > 0;
        }
    }
    while !s.to_host.is_empty() {
        match s.host.write(&s.to_host) {
            Ok(n) => {
                s.to_host.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                socket.abort();
                return false;
            }
        }
    }
    if !socket.may_recv()
        && s.to_host.is_empty()
        && !s.host_shut
        && socket.state() != tcp::State::SynSent
    {
        let _ = s.host.shutdown(Shutdown::Write);
        s.host_shut = true;
    }
    let finished = match socket.state() {
        tcp::State::Closed => true,
        tcp::State::TimeWait => s.host_shut,
        _ => false,
    };
    if finished {
        if socket.state() == tcp::State::Closed && !s.host_shut {
            // The guest refused or reset: tell the host client likewise.
            let _ = s.host.shutdown(Shutdown::Both);
        }
        sockets.remove(s.handle);
        return false;
    }
    true
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
