//! A guest running Lamina's own stack on one end of the link, the user-mode
//! network on the other, and a real host client through the forwarded port.

use lamina_core::args::BootArgs;
use lamina_core::device::{NetError, Netif, Stack, TcpListener, TcpRead, TcpWrite, UdpSocket};
use lamina_core::runtime::Executor;
use lamina_unix::reactor::{Async, Reactor};
use lamina_usernet::{
    socketpair, Event, Forward, Options, Protocol, UserNet, GATEWAY, GUEST, MAX_DATAGRAM,
};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The echo guest's MAC.
const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 15];

/// The guest's network device: its end of the socketpair, and the frames
/// the guest has sent.
struct PairNetif(Async<OwnedFd>, SentFrames);

/// The frames a guest has sent, each as a line that says what it is.
type SentFrames = Arc<Mutex<Vec<String>>>;

/// What `frame` is: its TCP ports, flags and sequence number, or its
/// EtherType.
fn describe(frame: &[u8]) -> String {
    let be16 = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let tcp = frame.len() >= 54 && frame[12..14] == [8, 0] && frame[23] == 6;
    let seq = |at: usize| u32::from_be_bytes(frame[at..at + 4].try_into().unwrap());
    if tcp {
        format!(
            "TCP {}->{} flags {:#04x} seq {} ack {}, {} bytes",
            be16(34),
            be16(36),
            frame[47],
            seq(38),
            seq(42),
            frame.len()
        )
    } else if frame.len() >= 14 {
        format!("EtherType {:#06x}, {} bytes", be16(12), frame.len())
    } else {
        format!("{} bytes", frame.len())
    }
}

impl Netif for PairNetif {
    fn mac(&self) -> [u8; 6] {
        GUEST_MAC
    }
    fn mtu(&self) -> usize {
        1500
    }
    async fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.0
            .read_with(|fd| recv(fd, buf))
            .await
            .map_err(|_| NetError::Io)
    }
    fn try_receive(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        match recv(self.0.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(_) => Err(NetError::Io),
        }
    }
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        self.1.lock().unwrap().push(describe(frame));
        // SAFETY: send reads frame.len() bytes from frame.
        unsafe {
            libc::send(
                self.0.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        Ok(())
    }
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: recv writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A free port on 127.0.0.1 for `protocol`.
fn free_port(protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Tcp => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        Protocol::Udp => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    }
}

/// Runs the user-mode network with `forwards` and a guest on Lamina's own
/// stack (at [`GUEST`]) that echoes TCP on port 80 and UDP on port 53, each
/// on a thread of its own.
fn start(forwards: &[Forward]) {
    let net = UserNet::bind(forwards).unwrap();
    let (guest_end, network_end) = socketpair().unwrap();
    std::thread::spawn(move || lamina_usernet::run(net, network_end));
    guest(guest_end, Duration::ZERO);
}

/// Starts the echo guest on `guest_end` of a link, on a thread of its own;
/// its application listens on TCP port 80 `listen_after` its stack is up
/// (until then the stack refuses connections to it). Returns the frames
/// the guest sends.
fn guest(guest_end: OwnedFd, listen_after: Duration) -> SentFrames {
    guest_losing_frames(guest_end, Duration::ZERO, listen_after)
}

/// [`guest`], whose device reads and loses every frame for `deaf` before
/// its stack starts, as a device whose interface is not configured yet.
fn guest_losing_frames(guest_end: OwnedFd, deaf: Duration, listen_after: Duration) -> SentFrames {
    let frames_sent = SentFrames::default();
    let counter = frames_sent.clone();
    std::thread::spawn(move || {
        let deaf_until = std::time::Instant::now() + deaf;
        let mut lost = vec![0u8; 2048];
        while std::time::Instant::now() < deaf_until {
            if recv(&guest_end, &mut lost).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let reactor = Rc::new(Reactor::new().unwrap());
        let executor = Executor::new(reactor.clone());
        let rt = executor.handle();
        let netif = PairNetif(Async::new(guest_end, reactor.clone()).unwrap(), counter);
        let clock = lamina_unix::devices::HostClock::new(reactor);
        let mut args = lamina_net::NetArgs::defaults();
        args.ipv4 = Some(lamina_net::Ipv4Cidr {
            address: GUEST,
            prefix: 24,
        });
        args.ipv4_gateway = Some(GATEWAY);
        let stack = lamina_net::NetStack::start(netif, clock, 1, &rt, args);
        executor.block_on(async move {
            let udp = stack
                .udp_bind(SocketAddr::from(([0, 0, 0, 0], 53)))
                .await
                .unwrap();
            rt.spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                    let _ = udp.send_to(&buf[..n], peer).await;
                }
            });
            if !listen_after.is_zero() {
                let millis = listen_after.as_millis() as u64;
                rt.sleep(lamina_core::runtime::Duration::from_millis(millis))
                    .await;
            }
            let listener = stack
                .tcp_listen(SocketAddr::from(([0, 0, 0, 0], 80)))
                .await
                .unwrap();
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                rt.spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => conn.write_all(&buf[..n]).await.unwrap(),
                        }
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
    });
    frames_sent
}

#[test]
fn host_port_reaches_the_guest_echo_server() {
    let host_port = free_port(Protocol::Tcp);
    start(&[Forward {
        host_port,
        guest_port: 80,
        protocol: Protocol::Tcp,
    }]);
    // Sequential rounds, then many at once.
    for round in 0..3 {
        echo_once(host_port, 300_000, round);
    }
    let clients: Vec<_> = (0..64u32)
        .map(|i| std::thread::spawn(move || echo_once(host_port, 20_000, 10 + i)))
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// Sends `payload` from `client` until its echo comes back (the first
/// datagrams may wait on ARP, or reach the guest before it listens).
fn udp_echo(client: &std::net::UdpSocket, payload: &[u8]) {
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..50 {
        client.send(payload).unwrap();
        while let Ok(n) = client.recv(&mut buf) {
            if &buf[..n] == payload {
                return;
            }
            // An echo of an earlier try, or not ours: a bug either way
            // unless it is this client's own earlier datagram.
            assert_eq!(&buf[..n], payload, "another client's echo");
        }
    }
    panic!("no echo of a {}-byte datagram", payload.len());
}

#[test]
fn udp_forward_echoes_each_client_its_own_datagrams() {
    let host_port = free_port(Protocol::Udp);
    // The same port for TCP too: the two forwards do not meet.
    let tcp_port = free_port(Protocol::Tcp);
    start(&[
        Forward {
            host_port,
            guest_port: 53,
            protocol: Protocol::Udp,
        },
        Forward {
            host_port: tcp_port,
            guest_port: 80,
            protocol: Protocol::Tcp,
        },
    ]);
    let client = || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(("127.0.0.1", host_port)).unwrap();
        socket
    };
    let first = client();
    udp_echo(&first, b"hello");
    // The largest datagram one frame holds comes back whole.
    let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| (i * 7) as u8).collect();
    udp_echo(&first, &big);
    // One too large for the link is dropped, and the flow carries on.
    first.send(&vec![1u8; MAX_DATAGRAM + 1]).unwrap();
    udp_echo(&first, b"after the big one");
    // Many clients at once, each many datagrams: each gets only its own.
    let clients: Vec<_> = (0..16u8)
        .map(|c| {
            let socket = client();
            std::thread::spawn(move || {
                for i in 0..20u8 {
                    let payload = vec![c; 100 + usize::from(i) * 50];
                    udp_echo(&socket, &payload);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // TCP is unaffected beside it.
    echo_once(tcp_port, 10_000, 1);
}

fn echo_once(host_port: u16, len: u32, round: u32) {
    let mut client = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i * 13 + round) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let t = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    t.join().unwrap();
    assert_eq!(back.len(), payload.len(), "round {round}");
    assert!(back == payload, "round {round}: echo differs");
}

/// Sockets a daemon owns, handed to the network with `UserNet::adopt`, are
/// served like its own: the connection and the datagram that were already
/// waiting on them when it started are answered.
#[test]
fn adopted_sockets_serve_what_was_queued_before_the_network_started() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (listener.local_addr().unwrap(), udp.local_addr().unwrap());
    // The client connects and sends before anything serves the port: the
    // host kernel completes the handshake and queues both.
    let mut early = std::net::TcpStream::connect(tcp_addr).unwrap();
    early.write_all(b"early bird").unwrap();
    early.shutdown(std::net::Shutdown::Write).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client.send(b"queued query").unwrap();

    let mut net = UserNet::bind(&[]).unwrap();
    assert_eq!(
        net.adopt(OwnedFd::from(listener), 80, Protocol::Tcp)
            .unwrap(),
        tcp_addr
    );
    assert_eq!(
        net.adopt(OwnedFd::from(udp), 53, Protocol::Udp).unwrap(),
        udp_addr
    );
    assert_eq!(net.local_addrs().unwrap(), vec![tcp_addr, udp_addr]);
    let (guest_end, network_end) = socketpair().unwrap();
    // The guest binds its UDP port before the network sends it anything:
    // the one queued datagram must do, with no retry.
    guest(guest_end, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(100));
    std::thread::spawn(move || lamina_usernet::run(net, network_end));

    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut back = Vec::new();
    early.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"early bird");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"queued query");
    // And what comes after, as on any forward.
    echo_once(tcp_addr.port(), 50_000, 3);
}

/// A socket of the wrong kind is refused with the reason, before anything
/// runs.
#[test]
fn adopt_refuses_sockets_of_the_wrong_kind() {
    let refusal = |socket: OwnedFd, protocol| {
        let mut net = UserNet::bind(&[]).unwrap();
        net.adopt(socket, 80, protocol).unwrap_err().to_string()
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(refusal(OwnedFd::from(udp), Protocol::Tcp).contains("not a TCP socket"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert!(refusal(OwnedFd::from(connected), Protocol::Tcp).contains("not listening"));
    assert!(refusal(OwnedFd::from(listener), Protocol::Udp).contains("not a UDP socket"));
    let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    drop(unbound);
    let (unix, _) = std::os::unix::net::UnixDatagram::pair().unwrap();
    assert!(refusal(OwnedFd::from(unix), Protocol::Udp).contains("not an IPv4 or IPv6"));
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(refusal(OwnedFd::from(file), Protocol::Tcp).contains("not an open socket"));
}

/// A daemon's sockets: a listening TCP socket (to the guest's port 80) and
/// a bound UDP socket (to port 53), on loopback.
fn daemon_sockets() -> (std::net::TcpListener, std::net::UdpSocket) {
    (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
    )
}

/// Runs the network with `options` on `sockets` (each to its guest port)
/// on a thread of its own; returns the guest's end of the link and the
/// network's events.
fn network(
    options: Options,
    sockets: Vec<(OwnedFd, u16, Protocol)>,
) -> (OwnedFd, std::sync::mpsc::Receiver<Event>) {
    let mut net = UserNet::bind(&[]).unwrap();
    for (socket, guest_port, protocol) in sockets {
        net.adopt(socket, guest_port, protocol).unwrap();
    }
    let (guest_end, network_end) = socketpair().unwrap();
    let (events, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        lamina_usernet::run_with(net, network_end, options, move |event| {
            let _ = events.send(event);
        })
    });
    (guest_end, received)
}

/// The events received within `limit`.
fn events_within(events: &std::sync::mpsc::Receiver<Event>, limit: Duration) -> Vec<Event> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(event) => seen.push(event),
            Err(_) => break,
        }
    }
    seen
}

/// Sends `request` on a connection made now to `addr`, shuts the sending
/// side, and returns the connection.
fn early_client(addr: SocketAddr, request: &[u8]) -> std::net::TcpStream {
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(request).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

/// How long the echo guest's application waits before it listens: its
/// stack refuses connections (RST) meanwhile.
const LISTEN_AFTER: Duration = Duration::from_millis(30);

/// A client that connects before the guest exists (0, 50 or 300 ms before
/// it starts), whose first SYN and ARP request wait in the link and are
/// refused while the application does not listen yet, is served as soon
/// as it listens: never a retransmission timeout or ARP rate limit later
/// (700 ms and 1 s in smoltcp), whether the guest's MAC is known in
/// advance or learned.
#[test]
fn a_connection_made_before_the_guest_boots_is_served_once_it_listens() {
    for guest_mac in [None, Some(GUEST_MAC)] {
        for delay in [0, 50, 300] {
            let (listener, _) = daemon_sockets();
            let addr = listener.local_addr().unwrap();
            let options = Options {
                guest_mac,
                ..Options::default()
            };
            let (guest_end, events) =
                network(options, vec![(OwnedFd::from(listener), 80, Protocol::Tcp)]);
            let mut client = early_client(addr, b"made before the boot");
            std::thread::sleep(Duration::from_millis(delay));
            let booted = std::time::Instant::now();
            guest(guest_end, LISTEN_AFTER);
            let mut first = [0u8; 1];
            client.read_exact(&mut first).unwrap();
            let first_byte = booted.elapsed();
            let mut back = first.to_vec();
            client.read_to_end(&mut back).unwrap();
            assert_eq!(back, b"made before the boot");
            eprintln!(
                "guest MAC {}, guest started {delay} ms after the client: first byte {first_byte:?} after the guest started (it listens after {LISTEN_AFTER:?})",
                if guest_mac.is_some() { "given" } else { "learned" }
            );
            // Far below a retransmission (700 ms) or ARP (1 s) timeout,
            // with room for a loaded machine.
            assert!(
                first_byte < LISTEN_AFTER + Duration::from_millis(300),
                "delay {delay} ms, MAC {guest_mac:?}: first byte after {first_byte:?}"
            );
            let seen = events_within(&events, Duration::from_millis(300));
            assert_eq!(
                seen,
                [Event::Active(1), Event::Up, Event::Active(0)],
                "delay {delay} ms"
            );
        }
    }
}

/// Once the guest has answered, a connection to a port it does not listen
/// on is refused at once, as before: boot tolerance is for the boot.
#[test]
fn a_refusal_once_the_guest_is_up_reaches_the_client() {
    let (listener, _) = daemon_sockets();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (addr, closed_addr) = (listener.local_addr().unwrap(), closed.local_addr().unwrap());
    let (guest_end, events) = network(
        Options::default(),
        vec![
            (OwnedFd::from(listener), 80, Protocol::Tcp),
            (OwnedFd::from(closed), 81, Protocol::Tcp),
        ],
    );
    guest(guest_end, Duration::ZERO);
    let mut client = early_client(addr, b"up?");
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"up?");
    assert!(events_within(&events, Duration::from_millis(200)).contains(&Event::Up));
    let start = std::time::Instant::now();
    let mut refused = std::net::TcpStream::connect(closed_addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The refusal may come first: a write or shutdown then fails.
    let _ = refused.write_all(b"nobody listens");
    let _ = refused.shutdown(std::net::Shutdown::Write);
    let outcome = refused.read(&mut [0u8; 16]);
    assert!(
        matches!(outcome, Ok(0))
            || outcome
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{outcome:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// A zero boot wait turns the tolerance off: a connection refused while
/// the application does not listen yet reaches the client as a refusal,
/// as without a daemon.
#[test]
fn a_zero_boot_wait_passes_a_refusal_during_the_boot_on() {
    let (listener, _) = daemon_sockets();
    let addr = listener.local_addr().unwrap();
    let options = Options {
        boot_wait: Duration::ZERO,
        ..Options::default()
    };
    let (guest_end, _events) = network(options, vec![(OwnedFd::from(listener), 80, Protocol::Tcp)]);
    guest(guest_end, Duration::from_secs(5));
    let mut client = early_client(addr, b"too early");
    let outcome = client.read(&mut [0u8; 16]);
    assert!(
        matches!(outcome, Ok(0))
            || outcome
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{outcome:?}"
    );
}

/// A guest that never answers: the host connection is closed after the
/// boot wait, not held forever.
#[test]
fn without_an_answer_the_connection_is_closed_after_the_boot_wait() {
    let (listener, _) = daemon_sockets();
    let addr = listener.local_addr().unwrap();
    let boot_wait = Duration::from_millis(300);
    let options = Options {
        boot_wait,
        ..Options::default()
    };
    let (_silent_guest, events) =
        network(options, vec![(OwnedFd::from(listener), 80, Protocol::Tcp)]);
    let start = std::time::Instant::now();
    let mut client = early_client(addr, b"anyone?");
    let outcome = client.read(&mut [0u8; 16]);
    let waited = start.elapsed();
    assert!(
        matches!(outcome, Ok(0))
            || outcome
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{outcome:?}"
    );
    assert!(
        waited >= boot_wait && waited < boot_wait + Duration::from_secs(1),
        "closed after {waited:?}"
    );
    assert_eq!(
        events_within(&events, Duration::from_millis(100)),
        [Event::Active(1), Event::Active(0)]
    );
}

/// With the probe the network connects by itself and reports `Up` once the
/// guest listens, with no client at all; a datagram that came before
/// waits for that and is then answered, sent once.
#[test]
fn the_probe_reports_up_and_holds_datagrams_until_then() {
    let (listener, udp) = daemon_sockets();
    let udp_addr = udp.local_addr().unwrap();
    let options = Options {
        probe: true,
        ..Options::default()
    };
    let (guest_end, events) = network(
        options,
        vec![
            (OwnedFd::from(listener), 80, Protocol::Tcp),
            (OwnedFd::from(udp), 53, Protocol::Udp),
        ],
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client.send(b"before the boot").unwrap();
    assert_eq!(events_within(&events, Duration::from_millis(100)), []);
    let booted = std::time::Instant::now();
    guest(guest_end, Duration::from_millis(50));
    assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(Event::Up));
    let up = booted.elapsed();
    eprintln!("up {up:?} after the guest started (it listens after 50 ms)");
    assert!(up < Duration::from_millis(350), "{up:?}");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"before the boot");
    assert_eq!(
        events.recv_timeout(Duration::from_secs(1)),
        Ok(Event::Active(1))
    );
}

/// A guest that reads and loses the gateway's first ARP request and SYN
/// (its interface is not configured yet) and then says nothing: the
/// gateway's own ARP requests find it up, and the SYN is sent again, long
/// before smoltcp would repeat either (1 s, 700 ms).
#[test]
fn a_lost_arp_request_or_syn_costs_no_second() {
    for guest_mac in [None, Some(GUEST_MAC)] {
        let (listener, _) = daemon_sockets();
        let addr = listener.local_addr().unwrap();
        let options = Options {
            guest_mac,
            ..Options::default()
        };
        let (guest_end, _events) =
            network(options, vec![(OwnedFd::from(listener), 80, Protocol::Tcp)]);
        let mut client = early_client(addr, b"lost and found");
        let started = std::time::Instant::now();
        let deaf = Duration::from_millis(100);
        guest_losing_frames(guest_end, deaf, Duration::ZERO);
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        let served = started.elapsed();
        eprintln!("guest MAC {guest_mac:?}, deaf for {deaf:?}: served after {served:?}");
        assert_eq!(back, b"lost and found");
        assert!(
            served < deaf + lamina_usernet::NUDGE_MAX + Duration::from_millis(200),
            "MAC {guest_mac:?}: served after {served:?}"
        );
    }
}

/// Connections the gateway closes first (the probe's, and a client's that
/// shut its side first) end with every segment of the guest's
/// acknowledged: the guest has nothing to send again afterwards. (The ACK
/// of the guest's FIN, delayed by smoltcp, was lost when the connection was
/// dropped: the guest sent its FIN again for ever, from 0.8 s on.)
#[test]
fn a_finished_connection_leaves_the_guest_nothing_to_send_again() {
    let (listener, _) = daemon_sockets();
    let addr = listener.local_addr().unwrap();
    let options = Options {
        guest_mac: Some(GUEST_MAC),
        probe: true,
        ..Options::default()
    };
    let (guest_end, events) = network(options, vec![(OwnedFd::from(listener), 80, Protocol::Tcp)]);
    let frames_sent = guest(guest_end, Duration::ZERO);
    assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(Event::Up));
    let mut client = early_client(addr, b"and nothing more");
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"and nothing more");
    for active in [1, 0] {
        let event = events.recv_timeout(Duration::from_secs(5));
        assert_eq!(event, Ok(Event::Active(active)));
    }
    // Counted from 300 ms on, so that a loaded machine's late frames of
    // the connection itself do not count; a FIN sent again came 0.8 and
    // 1.7 s after the end.
    std::thread::sleep(Duration::from_millis(300));
    let counted_from = frames_sent.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    let frames = frames_sent.lock().unwrap();
    assert!(
        frames.len() == counted_from,
        "the guest sent {:?} 0.3 to 2.3 s after the end, after {:#?}",
        &frames[counted_from..],
        &frames[..counted_from]
    );
}

/// A child process, killed and reaped when dropped (also when a test
/// fails).
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The program as a daemon runs it: inherited sockets, `--probe`, and its
/// events on standard output, a line each as they happen.
#[test]
fn the_program_serves_inherited_sockets_and_prints_its_events() {
    use std::io::BufRead;
    let (listener, udp) = daemon_sockets();
    let addr = listener.local_addr().unwrap();
    let (guest_end, network_end) = socketpair().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lamina-usernet"));
    command
        .arg(format!("--link-fd={}", network_end.as_raw_fd()))
        .arg(format!("--listen-fd={}:80", listener.as_raw_fd()))
        .arg(format!("--listen-fd={}:53/udp", udp.as_raw_fd()))
        .args([
            "--events",
            "--probe",
            "--guest-mac=02:00:00:00:00:0f",
            "--boot-wait=5",
        ])
        .stdout(std::process::Stdio::piped());
    lamina_usernet::pass_fds(
        &mut command,
        vec![
            network_end.as_raw_fd(),
            listener.as_raw_fd(),
            udp.as_raw_fd(),
        ],
    );
    let mut child = KilledOnDrop(command.spawn().unwrap());
    drop((network_end, listener, udp));
    // Read on a thread of its own, so that a line that never comes fails
    // the test (with the lines seen) instead of hanging it.
    let (line_sender, line_receiver) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line_sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut expect = |line: &str| {
        match line_receiver.recv_timeout(Duration::from_secs(10)) {
            Ok(got) => seen.push(got),
            Err(e) => seen.push(format!("<{e:?}>")),
        }
        assert_eq!(seen.last().unwrap(), line, "event lines so far: {seen:?}");
    };
    expect("ready");
    guest(guest_end, Duration::from_millis(20));
    expect("up");
    let mut client = early_client(addr, b"through the program");
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"through the program");
    expect("active 1");
    expect("active 0");
    drop(child);

    // A socket of the wrong kind: refused with the reason, nothing served.
    let (guest_end, network_end) = socketpair().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lamina-usernet"));
    command
        .arg(format!("--link-fd={}", network_end.as_raw_fd()))
        .arg(format!("--listen-fd={}:80/tcp", udp.as_raw_fd()));
    lamina_usernet::pass_fds(&mut command, vec![network_end.as_raw_fd(), udp.as_raw_fd()]);
    let output = command.output().unwrap();
    drop(guest_end);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a TCP socket"), "{stderr}");
    assert!(output.stdout.is_empty());
}
