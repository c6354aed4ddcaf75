//! The serving loops on the unix target's stack (the host's sockets),
//! against std's sockets as clients: UDP, TCP framing and pipelining, the
//! idle timeout, the connection limit, the message-size limit, transfers as
//! streams of messages, and clients that misbehave.
//!
//! The responder here echoes the query back as its answer (QR set) so that
//! the loops are tested alone; the answer logic has tests of its own. The
//! last test runs the server's own answer logic through the loops: a zone
//! transfer many messages long.

#[path = "support/loopback.rs"]
mod loopback;

use lamina_core::runtime::Duration as RtDuration;
use lamina_dns::server::{Authority, Config, PeerPrefix, Responder, Transfer, Transport};
use lamina_dns::zone::{Record, Zone, Zones};
use lamina_dns::{Class, Rtype};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Echoes a query as its answer. A query for `big.` is answered with as
/// many bytes as the loop allows (UDP) or 20000 (TCP); one for `none.` is
/// not answered; a query of type AXFR is answered with a transfer of
/// [`TRANSFER_MESSAGES`] messages of 1000 bytes, numbered.
struct Echo;

const TRANSFER_MESSAGES: u16 = 40;
const AXFR: u16 = 252;

fn qname(query: &[u8]) -> &[u8] {
    let end = query[12..]
        .iter()
        .position(|&b| b == 0)
        .map_or(query.len(), |p| 12 + p + 1);
    &query[12..end]
}

impl Responder for Echo {
    type Transfer<'a> = Numbered;

    fn respond(
        &self,
        query: &[u8],
        transport: Transport,
        _peer: IpAddr,
        out: &mut [u8],
    ) -> Option<usize> {
        if query.len() < 12 || qname(query) == b"\x04none\x00" {
            return None;
        }
        let len = query.len().min(out.len());
        out[..len].copy_from_slice(&query[..len]);
        out[2] |= 0x80;
        if qname(query) == b"\x03big\x00" {
            let big = match transport {
                Transport::Udp => out.len(),
                Transport::Tcp => 20000,
            };
            out[len..big].fill(b'x');
            return Some(big);
        }
        Some(len)
    }

    fn transfer(&self, query: &[u8], _peer: IpAddr) -> Option<Numbered> {
        let end = 12 + qname(query).len();
        let is_axfr = query.get(end..end + 2) == Some(&AXFR.to_be_bytes()[..]);
        is_axfr.then(|| Numbered {
            id: [query[0], query[1]],
            next: 0,
        })
    }
}

struct Numbered {
    id: [u8; 2],
    next: u16,
}

impl Transfer for Numbered {
    fn next_message(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.next == TRANSFER_MESSAGES {
            return None;
        }
        out[..2].copy_from_slice(&self.id);
        out[2..4].copy_from_slice(&[0x84, 0]);
        out[4..6].copy_from_slice(&self.next.to_be_bytes());
        out[6..1000].fill(b'z');
        self.next += 1;
        Some(1000)
    }
}

/// Every line logged, for the query-log test.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Collect;

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LOGGED.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

/// Starts a server with `config` on a free loopback port in a thread of its
/// own; returns the port (UDP and TCP).
fn start(config: Config) -> u16 {
    start_with(|| Echo, config)
}

/// Starts a server answering with the responder `make` gives (made in the
/// server's thread), as [`start`] does.
fn start_with<R, F>(make: F, config: Config) -> u16
where
    R: Responder + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    static LOGGER: Collect = Collect;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    loopback::serve_on_loopback(make, config).port()
}

/// A query for `name` (dotted, no trailing dot) of type `qtype`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    framed
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut message).unwrap();
    message
}

/// Whether the server closed `s` (end of stream or a reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data"),
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset),
    }
}

fn udp(port: u16, message: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.send_to(message, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn answers(port: u16) {
    let q = query(7, "still.here", 1);
    let mut expected = q.clone();
    expected[2] |= 0x80;
    assert_eq!(udp(port, &q).as_deref(), Some(&expected[..]));
}

#[test]
fn udp_queries_are_answered_within_the_payload_limit() {
    let config = Config {
        max_udp_payload: 1000,
        ..Config::default()
    };
    let port = start(config);
    let q = query(0x1234, "www.example.com", 1);
    let answer = udp(port, &q).expect("an answer");
    assert_eq!(answer.len(), q.len());
    assert_eq!(answer[2] & 0x80, 0x80);
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    // The responder gets the loop's largest datagram and no more.
    assert_eq!(udp(port, &query(1, "big", 1)).unwrap().len(), 1000);
    // No answer where the responder gives none; too short; too long.
    assert_eq!(udp(port, &query(2, "none", 1)), None);
    assert_eq!(udp(port, b"\x00\x01\x02"), None);
    assert_eq!(udp(port, &[0u8; 5000]), None);
    answers(port);
}

#[test]
fn tcp_answers_pipelined_queries_in_order_on_one_connection() {
    let port = start(Config::default());
    let mut s = connect(port);
    // 200 queries in one write, then every answer in order.
    let batch: Vec<u8> = (0..200)
        .flat_map(|id| framed(&query(id, "pipelined.example", 28)))
        .collect();
    s.write_all(&batch).unwrap();
    for id in 0..200u16 {
        let answer = read_message(&mut s);
        assert_eq!(&answer[..2], &id.to_be_bytes(), "answer {id}");
    }
    // A query split into single bytes, each written apart.
    for byte in framed(&query(500, "slow.example", 1)) {
        s.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(&read_message(&mut s)[..2], &500u16.to_be_bytes());
    // A large answer, and one not given between two that are.
    let mut three = framed(&query(1, "big", 1));
    three.extend(framed(&query(2, "none", 1)));
    three.extend(framed(&query(3, "after", 1)));
    s.write_all(&three).unwrap();
    assert_eq!(read_message(&mut s).len(), 20000);
    assert_eq!(&read_message(&mut s)[..2], &[0, 3]);
    // The client closes its side: the server closes its own.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(2)));
}

#[test]
fn a_transfer_is_a_stream_of_messages_and_the_connection_goes_on() {
    let port = start(Config::default());
    let mut s = connect(port);
    let mut both = framed(&query(9, "example.com", AXFR));
    both.extend(framed(&query(10, "after.example.com", 1)));
    s.write_all(&both).unwrap();
    for n in 0..TRANSFER_MESSAGES {
        let message = read_message(&mut s);
        assert_eq!(message.len(), 1000);
        assert_eq!(&message[..2], &[0, 9]);
        assert_eq!(&message[4..6], &n.to_be_bytes());
    }
    assert_eq!(&read_message(&mut s)[..2], &[0, 10]);
}

#[test]
fn idle_and_half_finished_connections_are_closed_after_the_timeout() {
    let config = Config {
        idle_timeout: RtDuration::from_millis(300),
        ..Config::default()
    };
    let port = start(config);
    // Silent from the start.
    let mut silent = connect(port);
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // Half a length prefix, then half a message, then nothing.
    for partial in [&b"\x00"[..], &framed(&query(1, "half", 1))[..10]] {
        let mut half = connect(port);
        half.write_all(partial).unwrap();
        assert!(closed_within(&mut half, Duration::from_secs(3)));
    }
    // Trickling one byte at a time does not keep a message alive past the
    // timeout: the limit counts from the last whole query.
    let mut trickle = connect(port);
    let message = framed(&query(1, "trickle.example.com", 1));
    let started = Instant::now();
    let mut closed = false;
    for byte in message {
        if trickle.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(
        closed || closed_within(&mut trickle, Duration::from_secs(3)),
        "still open"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A connection in use stays open across several timeouts' worth.
    let mut busy = connect(port);
    for id in 0..8u16 {
        busy.write_all(&framed(&query(id, "busy", 1))).unwrap();
        assert_eq!(&read_message(&mut busy)[..2], &id.to_be_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    answers(port);
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let config = Config {
        max_connections: 3,
        ..Config::default()
    };
    let port = start(config);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    // The three are served (and so accepted before the fourth).
    for (id, s) in held.iter_mut().enumerate() {
        s.write_all(&framed(&query(id as u16, "held", 1))).unwrap();
        assert_eq!(read_message(s)[1], id as u8);
    }
    let mut fourth = connect(port);
    assert!(closed_within(&mut fourth, Duration::from_secs(2)));
    // One closes; a new one is served.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(100));
    let mut again = connect(port);
    again.write_all(&framed(&query(77, "again", 1))).unwrap();
    assert_eq!(read_message(&mut again)[1], 77);
}

#[test]
fn misbehaving_clients_cost_only_their_own_connection() {
    let config = Config {
        max_tcp_query: 512,
        idle_timeout: RtDuration::from_millis(500),
        ..Config::default()
    };
    let port = start(config);
    // A message longer than the limit: closed without an answer.
    let mut long = connect(port);
    long.write_all(&[0x02, 0x01]).unwrap();
    assert!(closed_within(&mut long, Duration::from_secs(2)));
    // Within the limit after all: answered.
    let mut fits = connect(port);
    let mut q = query(5, "fits", 1);
    q.resize(512, 0);
    fits.write_all(&framed(&q)).unwrap();
    assert_eq!(read_message(&mut fits).len(), 512);
    // A reset in the middle of a message.
    let reset = connect(port);
    (&reset)
        .write_all(&framed(&query(1, "reset", 1))[..7])
        .unwrap();
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    // A half-closed connection in the middle of a message.
    let mut half = connect(port);
    half.write_all(&framed(&query(1, "half", 1))[..9]).unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_within(&mut half, Duration::from_secs(2)));
    // A client that asks for large answers and reads none: the server gives
    // up on it after the timeout, and serves others meanwhile.
    let mut greedy = connect(port);
    let many: Vec<u8> = (0..2000)
        .flat_map(|id| framed(&query(id, "big", 1)))
        .collect();
    let writer = std::thread::spawn(move || {
        let _ = greedy.write_all(&many);
        greedy
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut other = connect(port);
    other.write_all(&framed(&query(42, "other", 1))).unwrap();
    assert_eq!(read_message(&mut other)[1], 42);
    let mut greedy = writer.join().unwrap();
    // It reads now, after the timeout: some answers, then the end.
    std::thread::sleep(Duration::from_millis(800));
    greedy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    loop {
        match greedy.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {total} bytes: {e}"),
        }
    }
    assert!(total < 2000 * 20002, "{total} bytes: all answered");
    answers(port);
}

#[test]
fn the_query_log_has_a_line_per_query() {
    let config = Config {
        log_queries: true,
        ..Config::default()
    };
    let port = start(config);
    udp(port, &query(1, "logged.example", 16)).unwrap();
    let mut s = connect(port);
    s.write_all(&framed(&query(2, "tcp.logged.example", 28)))
        .unwrap();
    read_message(&mut s);
    s.write_all(&framed(&query(3, "logged.example", AXFR)))
        .unwrap();
    for _ in 0..TRANSFER_MESSAGES {
        read_message(&mut s);
    }
    let logged = LOGGED.lock().unwrap().clone();
    let has = |needle: &str| logged.iter().any(|l| l.contains(needle));
    assert!(has(" udp logged.example. TXT NOERROR 32"), "{logged:?}");
    assert!(
        has(" tcp tcp.logged.example. AAAA NOERROR 36"),
        "{logged:?}"
    );
    assert!(has(" tcp logged.example. AXFR NOERROR 1000"), "{logged:?}");
    assert!(
        has(&format!(
            "{TRANSFER_MESSAGES} messages, {} bytes",
            1000 * TRANSFER_MESSAGES as usize
        )),
        "{logged:?}"
    );
}

/// A zone of `hosts` TXT records of 100 bytes each under `big.test.`.
fn big_zone(hosts: usize) -> Zones {
    let origin = b"\x03big\x04test\x00".to_vec();
    let record = |owner: Vec<u8>, rtype: Rtype, rdata: Vec<u8>| Record {
        owner,
        rtype,
        class: Class::IN,
        ttl: 300,
        rdata,
    };
    let ns = [&b"\x02ns"[..], &origin].concat();
    let soa = [
        &ns[..],
        &ns,
        &[
            0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 60,
        ],
    ]
    .concat();
    let mut records = vec![
        record(origin.clone(), Rtype::SOA, soa),
        record(origin.clone(), Rtype::NS, ns.clone()),
        record(ns, Rtype::A, vec![192, 0, 2, 1]),
    ];
    for i in 0..hosts {
        let label = format!("host{i}");
        let owner = [&[label.len() as u8][..], label.as_bytes(), &origin].concat();
        records.push(record(
            owner,
            Rtype::TXT,
            [&[99u8][..], &[b't'; 99]].concat(),
        ));
    }
    Zones::new(vec![Zone::from_records(&origin, records).unwrap()]).unwrap()
}

#[test]
fn the_authority_transfers_a_large_zone_through_the_loop_as_many_messages() {
    const HOSTS: usize = 3000;
    let allowed: PeerPrefix = "127.0.0.1".parse().unwrap();
    let port = start_with(
        move || Authority::new(big_zone(HOSTS)).allow_axfr([allowed]),
        Config::default(),
    );
    let mut s = connect(port);
    let mut both = framed(&query(0x4242, "big.test", AXFR));
    both.extend(framed(&query(0x4343, "host7.big.test", 16)));
    s.write_all(&both).unwrap();
    // Every record once, the SOA twice, over several messages of the
    // transfer's ID; then the next query's answer.
    let (mut messages, mut records) = (0, 0usize);
    while records < HOSTS + 4 {
        let message = read_message(&mut s);
        assert_eq!(&message[..2], &[0x42, 0x42], "after {records} records");
        assert_eq!(message[3] & 0x0f, 0, "rcode");
        records += usize::from(u16::from_be_bytes([message[6], message[7]]));
        messages += 1;
    }
    assert_eq!(records, HOSTS + 4);
    assert!(messages >= 5, "{messages} messages");
    let answer = read_message(&mut s);
    assert_eq!(&answer[..2], &[0x43, 0x43]);
    assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1, "one TXT");
    // Over UDP, and from a peer not allowed over TCP: no transfer.
    let stranger =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stranger
        .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    stranger
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stranger: TcpStream = stranger.into();
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stranger
        .write_all(&framed(&query(9, "big.test", AXFR)))
        .unwrap();
    let answer = read_message(&mut stranger);
    assert_eq!(answer[3] & 0x0f, 5, "REFUSED");
    assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 0);
    let answer = udp(port, &query(10, "big.test", AXFR)).expect("an answer");
    assert_eq!(
        u16::from_be_bytes([answer[6], answer[7]]),
        0,
        "no records over UDP"
    );
}
