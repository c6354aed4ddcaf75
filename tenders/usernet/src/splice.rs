//! The event loop: one thread, `poll(2)` over the link, the listeners, the
//! forwarded connections and the UDP forwards' sockets, smoltcp in between.

use crate::datagram::Datagrams;
use crate::dial::{self, Dial, Dialer, Verdict, DEFAULT_BOOT_WAIT};
use crate::{Forward, Protocol, GATEWAY, GATEWAY_MAC, MTU, PREFIX};
use smoltcp::iface::{Config, Context, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
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
    /// Frames to hand smoltcp before the guest's: ARP replies that tell it
    /// the guest's MAC.
    inject: std::collections::VecDeque<Vec<u8>>,
    /// Frames received from the guest.
    frames_in: u64,
    /// The guest's MAC, given or learned from its frames.
    guest_mac: Option<EthernetAddress>,
    /// When smoltcp was last told the guest's MAC (it forgets after a
    /// minute without the guest's traffic).
    mac_told_at: Option<Duration>,
    /// The time of the current turn.
    now: Duration,
}

/// smoltcp is told the guest's MAC again after this long.
const MAC_REFRESH: Duration = Duration::from_secs(20);

impl Link {
    /// Tells smoltcp the guest's MAC, if known and not told lately.
    fn tell_mac(&mut self) {
        let Some(mac) = self.guest_mac else { return };
        if self
            .mac_told_at
            .is_some_and(|at| self.now.saturating_sub(at) < MAC_REFRESH)
        {
            return;
        }
        self.inject.push_back(dial::arp_reply_from_guest(mac));
        self.mac_told_at = Some(self.now);
    }

    /// Sends `frame` to the guest, in order behind held frames.
    fn send(&mut self, frame: &[u8]) {
        if (!self.backlog.is_empty() || !send_frame(self.fd.as_raw_fd(), frame))
            && self.backlog.len() < BACKLOG_FRAMES
        {
            self.backlog.push_back(frame.to_vec());
        }
    }

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
        let n = if let Some(frame) = self.inject.pop_front() {
            self.rx = frame;
            self.rx.len()
        } else {
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
            let n = n as usize;
            self.frames_in += 1;
            if let Some(mac) = dial::guest_mac_in(&self.rx[..n]) {
                if self.guest_mac != Some(mac) {
                    // Told after this frame, in this same poll.
                    self.guest_mac = Some(mac);
                    self.mac_told_at = None;
                    self.tell_mac();
                }
            }
            n
        };
        Some((
            Rx(&self.rx[..n]),
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
    /// The connection to the guest, tolerant of its boot.
    dial: Dial,
    /// From the host, not yet taken by smoltcp.
    to_guest: Vec<u8>,
    /// From the guest, not yet written to the host.
    to_host: Vec<u8>,
    host_eof: bool,
    host_shut: bool,
    /// The host connection failed and the guest's was reset: dropped
    /// after the next poll, which sends the reset.
    aborted: bool,
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

/// How the network treats a guest that is still booting, and what it
/// does to learn when the guest is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long a connection to the guest is tried (a refusal retried, a
    /// lost SYN sent again) while the guest has not answered one yet:
    /// after that its host connection is closed. `--boot-wait=SECONDS`;
    /// [`DEFAULT_BOOT_WAIT`] by default; zero turns the tolerance off (a
    /// refusal reaches the client at once, a lost SYN waits for smoltcp's
    /// retransmission).
    pub boot_wait: Duration,
    /// The guest's MAC, if known in advance (the tender's
    /// `--net-mac:NAME=MAC`; `--guest-mac=MAC`): the gateway then sends
    /// its first SYN without asking ARP. Otherwise it learns the MAC from
    /// the first frame the guest sends.
    pub guest_mac: Option<[u8; 6]>,
    /// Connect to the first TCP forward's guest port at once (the forwards
    /// [`UserNet::bind`] made first, then the adopted sockets, each in
    /// order; with the boot tolerance), close that connection once the guest answers, and
    /// report [`Event::Up`] then. UDP datagrams from host clients wait in
    /// their sockets until then, so that none reaches a guest that cannot
    /// take it yet. `--probe`.
    pub probe: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            boot_wait: DEFAULT_BOOT_WAIT,
            guest_mac: None,
            probe: false,
        }
    }
}

/// What the network reports while it runs (`lamina-usernet --events`
/// prints each as a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `up`: a TCP connection from the gateway to the guest was
    /// established for the first time (the guest's application listens).
    Up,
    /// `active N`: the open spliced TCP connections (waiting for the guest
    /// or established) plus the live UDP flows changed to N; every change
    /// is reported, also those of a connection that opened and closed
    /// between two wake-ups.
    Active(usize),
}

/// The probe's connection (see [`Options::probe`]).
struct Probe {
    handle: SocketHandle,
    dial: Dial,
    /// When it was closed, once the guest answered.
    closed_at: Option<Duration>,
}

/// How long the probe's connection may take to close before it is dropped.
const PROBE_CLOSE: Duration = Duration::from_secs(5);

/// smoltcp's clock: `elapsed` since the network started.
fn instant(elapsed: Duration) -> Instant {
    Instant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
}

/// Runs the private network until the guest's end of the link closes. The
/// calling thread is sandboxed first (see `sandbox`): the lamina-usernet
/// process's only thread, or a thread of its own in a test.
pub fn run(net: UserNet, link: OwnedFd) -> io::Result<()> {
    run_with(net, link, Options::default(), |_| {})
}

/// [`run`] with `options`, calling `report` with each [`Event`] as it
/// happens.
pub fn run_with(
    net: UserNet,
    link: OwnedFd,
    options: Options,
    mut report: impl FnMut(Event),
) -> io::Result<()> {
    let start = std::time::Instant::now();
    let seed = start.elapsed().as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    crate::sandbox::sandbox()?;
    let mut gateway = Gateway::with_options(net, link, options, seed, Duration::ZERO);
    loop {
        gateway.serve(start.elapsed())?;
        gateway.take_events().into_iter().for_each(&mut report);
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
    dialer: Dialer,
    probe: Option<Probe>,
    /// Whether the probe's answer is still awaited (host datagrams wait).
    probing: bool,
    /// Events not yet taken by [`Gateway::take_events`], oldest first.
    events: Vec<Event>,
    /// Whether [`Event::Up`] is among the events already noted.
    noted_up: bool,
    /// The count of the last [`Event::Active`] noted.
    noted_active: usize,
}

impl Gateway {
    /// The network on `link` (the network end of a [`crate::socketpair`]),
    /// with smoltcp's random numbers (initial sequence numbers, ports)
    /// from `random_seed`, at time `now` since the network started.
    pub fn new(net: UserNet, link: OwnedFd, random_seed: u64, now: Duration) -> Gateway {
        Gateway::with_options(net, link, Options::default(), random_seed, now)
    }

    /// [`Gateway::new`] with `options`.
    pub fn with_options(
        net: UserNet,
        link: OwnedFd,
        options: Options,
        random_seed: u64,
        now: Duration,
    ) -> Gateway {
        let mut device = Link {
            fd: link,
            rx: Vec::new(),
            tx: Vec::new(),
            backlog: Default::default(),
            inject: Default::default(),
            frames_in: 0,
            guest_mac: options.guest_mac.map(EthernetAddress),
            mac_told_at: None,
            now,
        };
        device.tell_mac();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GATEWAY_MAC)));
        config.random_seed = random_seed;
        let mut iface = Interface::new(config, &mut device, instant(now));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(GATEWAY), PREFIX));
        });
        let mut dialer = Dialer::new(options.boot_wait);
        dialer.mac_known = device.guest_mac.is_some();
        let mut sockets = SocketSet::new(Vec::new());
        let probe_port = net.listeners.first().map(|(forward, _)| forward.guest_port);
        let probe = probe_port.filter(|_| options.probe).and_then(|port| {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 64]),
                tcp::SocketBuffer::new(vec![0; 64]),
            );
            let dial = Dial::start(&mut socket, iface.context(), port, now, &mut dialer)?;
            Some(Probe {
                handle: sockets.add(socket),
                dial,
                closed_at: None,
            })
        });
        Gateway {
            listeners: net.listeners,
            device,
            iface,
            sockets,
            splices: Vec::new(),
            datagrams: Datagrams::new(net.datagrams),
            dialer,
            probing: probe.is_some(),
            probe,
            events: Vec::new(),
            noted_up: false,
            noted_active: 0,
        }
    }

    /// The events since the last call, oldest first. A connection can be
    /// accepted, served and closed within one [`Gateway::serve`] (a quick
    /// guest answers each frame before the turn ends), so the events are
    /// noted where the state changes, not by comparing the state between
    /// turns: its `active 1` and `active 0` are both reported.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Notes [`Event::Up`] once the guest has first answered, and
    /// [`Event::Active`] whenever the count has changed since last noted.
    fn note_events(&mut self) {
        if self.dialer.up && !self.noted_up {
            self.noted_up = true;
            self.events.push(Event::Up);
        }
        let active = self.active();
        if active != self.noted_active {
            self.noted_active = active;
            self.events.push(Event::Active(active));
        }
    }

    /// Whether the guest has answered a connection from the gateway.
    pub fn is_up(&self) -> bool {
        self.dialer.up
    }

    /// Open spliced TCP connections (waiting for the guest or established)
    /// plus live UDP flows.
    pub fn active(&self) -> usize {
        self.splices.len() + self.datagrams.flows()
    }

    /// The probe's progress: closes its connection once established,
    /// drops it once closed (or given up).
    fn check_probe(&mut self, now: Duration) {
        let Some(probe) = &mut self.probe else { return };
        let socket = self.sockets.get_mut::<tcp::Socket>(probe.handle);
        let verdict = probe
            .dial
            .check(socket, self.iface.context(), now, &mut self.dialer);
        let done = match (verdict, probe.closed_at) {
            (Verdict::Connecting, _) => false,
            (Verdict::Failed, _) => {
                log::warn!(
                    "the guest did not answer on port {} within the boot wait",
                    probe.dial.guest_port()
                );
                true
            }
            (Verdict::Open, None) => {
                close_and_ack_at_once(socket);
                probe.closed_at = Some(now);
                false
            }
            (Verdict::Open, Some(at)) => {
                matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait)
                    || now >= at + PROBE_CLOSE
            }
        };
        if verdict != Verdict::Connecting {
            self.probing = false;
        }
        if done {
            probe.dial.finish(&mut self.dialer);
            self.sockets.remove(probe.handle);
            self.probe = None;
        }
    }

    /// Serves once, without waiting, at time `now` since the network
    /// started: accepts the host connections waiting on the listeners,
    /// takes every frame the guest has sent (Ethernet, ARP, IPv4, ICMP,
    /// TCP, UDP, all parsed by smoltcp here), moves bytes between the host
    /// connections and the guest's and datagrams between the host clients
    /// and the guest, and sends the frames that result.
    pub fn serve(&mut self, now: Duration) -> io::Result<()> {
        self.device.now = now;
        self.dialer.wake = None;
        self.device.tell_mac();
        // New host connections: each opens a connection to the guest.
        let waiting = connections_waiting(&self.listeners);
        for ((forward, listener), _) in self.listeners.iter().zip(waiting).filter(|(_, w)| *w) {
            while let Ok((host, _)) = listener.accept() {
                host.set_nonblocking(true)?;
                host.set_nodelay(true).ok();
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                    tcp::SocketBuffer::new(vec![0; BUFFER]),
                );
                socket.set_nagle_enabled(false);
                let Some(dial) = Dial::start(
                    &mut socket,
                    self.iface.context(),
                    forward.guest_port,
                    now,
                    &mut self.dialer,
                ) else {
                    continue;
                };
                let handle = self.sockets.add(socket);
                self.splices.push(Splice {
                    host,
                    handle,
                    dial,
                    to_guest: Vec::new(),
                    to_host: Vec::new(),
                    host_eof: false,
                    host_shut: false,
                    aborted: false,
                });
            }
        }
        self.note_events();
        self.device.flush();
        self.datagrams.expire(&mut self.sockets, now);
        self.note_events();
        // Until nothing moves: frames in, bytes across, frames out.
        for _ in 0..64 {
            let mut moved = false;
            if !self.probing {
                self.datagrams
                    .take_from_host(&mut self.sockets, now, &mut moved);
                self.note_events();
            }
            let (iface, device, sockets) = (&mut self.iface, &mut self.device, &mut self.sockets);
            let ingress = iface.poll(instant(now), device, sockets);
            self.dialer.frames_in = device.frames_in;
            self.dialer.mac_known = device.guest_mac.is_some();
            let dialer = &mut self.dialer;
            self.splices.retain_mut(|s| {
                let open = pump(s, iface.context(), sockets, now, dialer, &mut moved);
                if !open {
                    s.dial.finish(dialer);
                }
                open
            });
            self.check_probe(now);
            self.note_events();
            self.datagrams
                .answer_host(&mut self.sockets, now, &mut moved);
            if self.dialer.arp_due {
                // Behind the SYN it follows (see dial).
                self.iface
                    .poll(instant(now), &mut self.device, &mut self.sockets);
                self.dialer.arp_due = false;
                self.device.send(&dial::arp_request_for_guest());
                moved = true;
            }
            if !moved && ingress == smoltcp::iface::PollResult::None {
                // Sends what this pass queued (a close, a reset, a SYN).
                // The guest answers within microseconds, so this poll may
                // also take in its frames: their bytes (or the end of a
                // handshake) need another pass, or they would wait in
                // smoltcp for the next wake-up, up to 100 ms later, with
                // nothing on the link to wake the loop sooner.
                let frames_before = self.device.frames_in;
                self.iface
                    .poll(instant(now), &mut self.device, &mut self.sockets);
                if self.device.frames_in == frames_before {
                    return Ok(());
                }
            }
        }
        // Still moving after every pass: send what the last one queued,
        // and come back at once for what is left.
        self.iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        self.dialer.wake = Some(now);
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
        let datagrams = self.datagrams.fds().filter(|_| !self.probing);
        fds.extend(listening.chain(datagrams).map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
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
        let dial_delay = self.dialer.wake.map(|at| at.saturating_sub(now));
        // A look every 100 ms while connections, UDP flows or the probe
        // may have time-based work (flow expiry, boot-wait checks); an
        // idle network sleeps until a frame, a client or a smoltcp timer
        // comes: thousands of idle unikernels on a host must not each
        // wake ten times a second.
        let busy = !self.splices.is_empty() || self.datagrams.flows() > 0 || self.probe.is_some();
        let delay = self
            .iface
            .poll_delay(instant(now), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .into_iter()
            .chain(dial_delay)
            .chain(busy.then_some(Duration::from_millis(100)))
            .min()
            .map_or(-1, |delay| {
                // Rounded up: a timer due in 0.9 ms is a 1 ms sleep, not
                // a millisecond of turns that find nothing due yet.
                let micros = delay.min(Duration::from_millis(100)).as_micros();
                micros.div_ceil(1000) as i32
            });
        // SAFETY: poll reads and writes the pollfd array it is given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, delay) };
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        Ok(fds[0].revents & (libc::POLLHUP | libc::POLLERR) == 0)
    }
}

/// Which of `listeners` have a connection waiting to be accepted, by one
/// poll(2) that does not wait; all of them if it fails. An accept(2) on an
/// empty queue costs more than that look: the kernel makes a socket and a
/// file for the connection first and frees them when it finds none (with
/// two forwards, a sixth of a turn of the `usernet` fuzz target).
fn connections_waiting(listeners: &[(Forward, TcpListener)]) -> Vec<bool> {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|(_, listener)| libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll reads and writes the pollfd array it is given.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    fds.iter().map(|fd| ready < 0 || fd.revents != 0).collect()
}

/// Sends the gateway's FIN, and from now on acknowledges each of the
/// guest's segments in the turn it arrives. A connection the gateway
/// closes first ends in TIME-WAIT, where it is dropped at once (its buffers
/// are not kept for smoltcp's 10 s); with smoltcp's delayed ACK (10 ms) the
/// ACK of the guest's last segment (its FIN, often with the end of its
/// data) would still be pending then and never sent: the guest would
/// retransmit its FIN for ever, waking the network each time.
fn close_and_ack_at_once(socket: &mut tcp::Socket) {
    socket.set_ack_delay(None);
    socket.close();
}

/// Moves bytes both ways for one connection, setting `moved` if any moved;
/// false when the connection is finished.
fn pump(
    s: &mut Splice,
    cx: &mut Context,
    sockets: &mut SocketSet<'static>,
    now: Duration,
    dialer: &mut Dialer,
    moved: &mut bool,
) -> bool {
    if s.aborted {
        // The poll since the abort has sent the guest its reset.
        sockets.remove(s.handle);
        return false;
    }
    let socket = sockets.get_mut::<tcp::Socket>(s.handle);
    let verdict = s.dial.check(socket, cx, now, dialer);
    if verdict == Verdict::Failed {
        // Refused once the guest was up, or no answer in the boot wait:
        // the host client is told likewise.
        socket.abort();
        let _ = s.host.shutdown(Shutdown::Both);
        sockets.remove(s.handle);
        return false;
    }
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
                s.aborted = true;
                return true;
            }
        }
    }
    if verdict == Verdict::Connecting {
        // The host's bytes wait for the guest's answer.
        return true;
    }
    if !s.to_guest.is_empty() && socket.may_send() {
        if let Ok(n) = socket.send_slice(&s.to_guest) {
            s.to_guest.drain(..n);
            *moved |= n > 0;
        }
    }
    if s.host_eof && s.to_guest.is_empty() && socket.may_send() {
        close_and_ack_at_once(socket);
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
                s.aborted = true;
                return true;
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
