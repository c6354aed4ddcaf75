//! The stub resolver on the unix target's stack (the host's sockets)
//! against a real server: a Knot DNS instance (`knotd`) each test starts on
//! a free loopback port with two small zones. Covered: A and AAAA, CNAME
//! chains (inside a zone and into another), NODATA, NXDOMAIN cached for its
//! negative TTL, an answer cached until its TTL runs out, a lost query sent
//! again, a truncated answer asked again over TCP, a server that does not
//! answer (the next one is asked), the servers the stack reports, and
//! spoofed replies ignored.

#[path = "support/loopback.rs"]
mod loopback;

use lamina_core::runtime::{Duration as RtDuration, Executor, Handle};
use lamina_dns::resolver::{Config, ResolveError, Resolver};
use lamina_dns::Rtype;
use lamina_unix::devices::HostRandom;
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

const EXAMPLE_ZONE: &str = "\
$ORIGIN example.test.
$TTL 300
@       300 IN SOA ns admin 1 3600 600 86400 2
@       NS    ns
ns      A     127.0.0.1
www     A     192.0.2.1
www     AAAA  2001:db8::1
alias   CNAME alias2
alias2  CNAME www
out     CNAME www.other.test.
short 2 A     192.0.2.2
v6only  AAAA  2001:db8::6
";

const OTHER_ZONE: &str = "\
$ORIGIN other.test.
$TTL 300
@   IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@   NS  ns.example.test.
www A   198.51.100.7
";

/// The TXT records at `big.example.test`: twelve of 200 bytes, about
/// 2,500 bytes in all, more than the 1232 the resolver offers over UDP.
fn big_txt() -> Vec<String> {
    (0..12)
        .map(|i| format!("{i:02}{}", "x".repeat(198)))
        .collect()
}

/// A Knot DNS server on 127.0.0.1, stopped on drop.
struct Knot {
    child: Option<Child>,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A port free for both UDP and TCP on loopback (released before use).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Knot {
    /// Starts knotd with the two zones; `None` if knotd is not installed
    /// (skipped, or failed under CI).
    fn start() -> Option<Knot> {
        if !lamina_test_support::tools_or_skip("the resolver against Knot", &["knotd"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let path = path.as_path();
        let mut example = String::from(EXAMPLE_ZONE);
        for text in big_txt() {
            example.push_str(&format!("big TXT \"{text}\"\n"));
        }
        std::fs::write(path.join("example.test.zone"), example).unwrap();
        std::fs::write(path.join("other.test.zone"), OTHER_ZONE).unwrap();
        let port = free_port();
        let config = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\n    pidfile: {dir}/knot.pid\n\
             database:\n    storage: {dir}\n\
             log:\n  - target: stderr\n    any: info\n\
             template:\n  - id: default\n    storage: {dir}\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n  - domain: example.test\n    file: example.test.zone\n  - domain: other.test\n    file: other.test.zone\n",
            dir = path.display()
        );
        std::fs::write(path.join("knot.conf"), config).unwrap();
        let log = std::fs::File::create(path.join("knot.log")).unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(path.join("knot.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let knot = Knot {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        knot.wait_until_serving(path);
        Some(knot)
    }

    /// Waits until both zones are loaded and the server runs.
    fn wait_until_serving(&self, dir: &Path) {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(dir.join("knot.log")).unwrap_or_default();
            if log.contains("[example.test.] loaded") && log.contains("[other.test.] loaded") {
                return;
            }
            assert!(
                !log.contains("critical") && start.elapsed() < Duration::from_secs(20),
                "knotd did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (it answers nothing from now on).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `test` on a unix executor with the host's stack, which reports
/// `servers` as its DNS servers.
fn run<F, Fut>(servers: Vec<SocketAddr>, test: F) -> Fut::Output
where
    F: FnOnce(HostStack, Handle) -> Fut,
    Fut: Future,
{
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap()).with_dns_servers(servers);
    let runtime = executor.handle();
    executor.block_on(test(stack, runtime))
}

/// A resolver over `stack` with a short timeout, asking the stack's servers.
fn resolver(stack: HostStack, runtime: Handle, timeout_ms: u64) -> Resolver<HostStack, HostRandom> {
    let config = Config {
        timeout: RtDuration::from_millis(timeout_ms),
        attempts: 1,
        ..Config::default()
    };
    Resolver::new(stack, HostRandom, runtime, config)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn addresses_and_records_through_cname_chains_and_tcp() {
    let Some(knot) = Knot::start() else { return };
    run(vec![knot.address], |stack, runtime| async move {
        let resolver = resolver(stack, runtime, 2000);
        assert_eq!(
            resolver.lookup_ip("www.example.test").await,
            Ok(vec![ip("192.0.2.1"), ip("2001:db8::1")])
        );
        assert_eq!(
            resolver.lookup_ip("v6only.example.test.").await,
            Ok(vec![ip("2001:db8::6")])
        );
        // A chain inside the zone, in one response.
        let answer = resolver
            .query("Alias.Example.Test", Rtype::A)
            .await
            .unwrap();
        assert_eq!(
            answer.aliases,
            [
                b"\x05alias\x07example\x04test\x00".to_vec(),
                b"\x06alias2\x07example\x04test\x00".to_vec()
            ]
        );
        assert_eq!(answer.name, b"\x03www\x07example\x04test\x00");
        assert_eq!(answer.addresses().collect::<Vec<_>>(), [ip("192.0.2.1")]);
        assert!(answer.ttl > 0 && answer.ttl <= 300, "{}", answer.ttl);
        // A chain into another zone: the alias's target asked in turn if
        // the first response stops at it.
        assert_eq!(
            resolver.lookup_ip("out.example.test").await,
            Ok(vec![ip("198.51.100.7")])
        );
        // The CNAME itself, asked for: not followed.
        let cname = resolver
            .query("alias.example.test", Rtype::CNAME)
            .await
            .unwrap();
        assert_eq!(
            cname.rdatas,
            [b"\x06alias2\x07example\x04test\x00".to_vec()]
        );
        // Any type: MX (NODATA), NS, and a TXT RRset too big for UDP,
        // which comes truncated and is asked again over TCP.
        assert_eq!(
            resolver.query("www.example.test", Rtype::MX).await,
            Err(ResolveError::NoData)
        );
        let ns = resolver.query("example.test", Rtype::NS).await.unwrap();
        assert_eq!(ns.rdatas, [b"\x02ns\x07example\x04test\x00".to_vec()]);
        let txt = resolver
            .query("big.example.test", Rtype::TXT)
            .await
            .unwrap();
        let mut texts: Vec<Vec<u8>> = txt.rdatas.iter().map(|d| d[1..].to_vec()).collect();
        texts.sort();
        let expected: Vec<Vec<u8>> = big_txt().into_iter().map(String::into_bytes).collect();
        assert_eq!(texts, expected, "the whole RRset, over TCP");
        assert!(txt.rdatas.iter().map(Vec::len).sum::<usize>() > 1232);
        assert_eq!(
            resolver.lookup_ip("bad..name").await,
            Err(ResolveError::BadName)
        );
    });
}

#[test]
fn answers_and_nxdomain_are_cached_for_their_ttls_and_no_longer() {
    let Some(mut knot) = Knot::start() else {
        return;
    };
    let server = knot.address;
    let knot = &mut knot;
    run(vec![server], |stack, runtime| async move {
        let resolver = resolver(stack, runtime.clone(), 300);
        assert_eq!(
            resolver.lookup_ip("nope.example.test").await,
            Err(ResolveError::NxDomain)
        );
        let short = resolver
            .query("short.example.test", Rtype::A)
            .await
            .unwrap();
        assert!(short.ttl <= 2);
        let www = resolver.query("www.example.test", Rtype::A).await.unwrap();
        // The server goes away: what was learned is still known.
        knot.stop();
        assert_eq!(
            resolver.query("nope.example.test", Rtype::A).await,
            Err(ResolveError::NxDomain)
        );
        assert_eq!(
            resolver.query("nope.example.test", Rtype::TXT).await,
            Err(ResolveError::NxDomain),
            "NXDOMAIN holds for every type"
        );
        assert_eq!(
            resolver
                .query("short.example.test", Rtype::A)
                .await
                .map(|a| a.rdatas),
            Ok(short.rdatas)
        );
        // Past the TTLs (2 s for `short`, the SOA MINIMUM of 2 s for the
        // NXDOMAIN): asked again, and nobody answers.
        runtime.sleep(RtDuration::from_millis(2500)).await;
        assert_eq!(
            resolver.query("nope.example.test", Rtype::A).await,
            Err(ResolveError::TimedOut)
        );
        assert_eq!(
            resolver.query("short.example.test", Rtype::A).await,
            Err(ResolveError::TimedOut)
        );
        // The 300 s answer is still there.
        assert_eq!(
            resolver
                .query("www.example.test", Rtype::A)
                .await
                .map(|a| a.rdatas),
            Ok(www.rdatas)
        );
    });
}

#[test]
fn a_silent_server_times_out_and_the_next_one_answers() {
    let Some(knot) = Knot::start() else { return };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let servers = vec![silent.local_addr().unwrap(), knot.address];
    let took = run(servers, |stack, runtime| async move {
        let resolver = resolver(stack, runtime.clone(), 400);
        let start = runtime.now();
        assert_eq!(
            resolver.lookup_ip("www.example.test").await,
            Ok(vec![ip("192.0.2.1"), ip("2001:db8::1")])
        );
        runtime.now() - start
    });
    // Both questions (A, AAAA) waited out the silent server first.
    assert!(took >= Duration::from_millis(800), "{took:?}");
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let (len, _) = silent
        .recv_from(&mut buf)
        .expect("the silent server was asked");
    assert!(len > 12);
}

#[test]
fn no_server_at_all_is_a_clear_error() {
    run(Vec::new(), |stack, runtime| async move {
        let resolver = resolver(stack, runtime, 100);
        assert_eq!(
            resolver.lookup_ip("www.example.test").await,
            Err(ResolveError::NoServers)
        );
    });
}

/// A server in the middle: it passes each query to Knot, and before the
/// real answer sends three forged ones carrying another address: from
/// another port, with another ID, and for another name. None is believed.
#[test]
fn spoofed_replies_are_ignored() {
    let Some(knot) = Knot::start() else { return };
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let front_address = front.local_addr().unwrap();
    let upstream = knot.address;
    let forger = std::thread::spawn(move || {
        let elsewhere = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to_knot = UdpSocket::bind("127.0.0.1:0").unwrap();
        to_knot
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        front
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        // Two questions: A and AAAA.
        for _ in 0..2 {
            let Ok((len, client)) = front.recv_from(&mut buf) else {
                return;
            };
            to_knot.send_to(&buf[..len], upstream).unwrap();
            let (len, _) = to_knot.recv_from(&mut buf).unwrap();
            let genuine = buf[..len].to_vec();
            let mut forged = genuine.clone();
            for pair in [([192u8, 0, 2, 1], [6u8, 6, 6, 6])] {
                if let Some(at) = forged.windows(4).position(|w| w == pair.0) {
                    forged[at..at + 4].copy_from_slice(&pair.1);
                }
            }
            if let Some(at) = forged
                .windows(16)
                .position(|w| w[..4] == [0x20, 0x01, 0x0d, 0xb8])
            {
                forged[at + 15] = 0x66;
            }
            elsewhere.send_to(&forged, client).unwrap();
            let mut other_id = forged.clone();
            other_id[1] ^= 1;
            front.send_to(&other_id, client).unwrap();
            let mut other_name = forged.clone();
            other_name[13] = b'v';
            front.send_to(&other_name, client).unwrap();
            front.send_to(&genuine, client).unwrap();
        }
    });
    run(vec![front_address], |stack, runtime| async move {
        let resolver = resolver(stack, runtime, 3000);
        assert_eq!(
            resolver.lookup_ip("www.example.test").await,
            Ok(vec![ip("192.0.2.1"), ip("2001:db8::1")])
        );
    });
    forger.join().unwrap();
}

/// A lost query is sent again: a server in the middle drops the first
/// query it gets and passes the next to Knot; with two attempts the
/// resolver's retry is answered.
#[test]
fn a_lost_query_is_sent_again() {
    let Some(knot) = Knot::start() else { return };
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let front_address = front.local_addr().unwrap();
    let upstream = knot.address;
    let lossy = std::thread::spawn(move || {
        let to_knot = UdpSocket::bind("127.0.0.1:0").unwrap();
        to_knot
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        front
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let (_, _) = front.recv_from(&mut buf).expect("a first query");
        let (len, client) = front.recv_from(&mut buf).expect("the query again");
        to_knot.send_to(&buf[..len], upstream).unwrap();
        let (len, _) = to_knot.recv_from(&mut buf).unwrap();
        front.send_to(&buf[..len], client).unwrap();
    });
    let took = run(vec![front_address], |stack, runtime| async move {
        let config = Config {
            timeout: RtDuration::from_millis(300),
            attempts: 2,
            ..Config::default()
        };
        let resolver = Resolver::new(stack, HostRandom, runtime.clone(), config);
        let start = runtime.now();
        let answer = resolver.query("www.example.test", Rtype::A).await;
        assert_eq!(answer.map(|a| a.rdatas), Ok(vec![vec![192, 0, 2, 1]]));
        runtime.now() - start
    });
    assert!(
        took >= Duration::from_millis(300),
        "answered before the retry: {took:?}"
    );
    lossy.join().unwrap();
}

/// Serves Lamina's own authoritative server (the crate's test zones) on a
/// loopback port from a thread; returns its address.
fn start_lamina_server() -> SocketAddr {
    use lamina_dns::server::{Authority, Config as ServerConfig};
    let zones = lamina_dns::testing::zones;
    loopback::serve_on_loopback(move || Authority::new(zones()), ServerConfig::default())
}

/// The resolver against Lamina's own server: addresses, a CNAME answered
/// in one response, NXDOMAIN, and a TXT set that only TCP carries.
#[test]
fn the_resolver_against_lamina_s_own_server() {
    let server = start_lamina_server();
    run(vec![server], |stack, runtime| async move {
        let resolver = resolver(stack, runtime, 2000);
        assert_eq!(
            resolver.lookup_ip("www.example.com").await,
            Ok(vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1")])
        );
        let alias = resolver.query("alias.example.com", Rtype::A).await.unwrap();
        assert_eq!(
            alias.aliases.first().map(Vec::as_slice),
            Some(&b"\x05alias\x07example\x03com\x00"[..])
        );
        assert!(alias.addresses().count() > 0, "{alias:?}");
        assert_eq!(
            resolver.lookup_ip("nope.example.com").await,
            Err(ResolveError::NxDomain)
        );
        // 40 TXT records, about 1.7 KB: truncated over UDP, fetched over TCP.
        let big = resolver.query("big.example.com", Rtype::TXT).await.unwrap();
        assert_eq!(big.rdatas.len(), 40);
    });
}
