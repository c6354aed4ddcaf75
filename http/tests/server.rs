//! The HTTP server on the unix target, against curl, nc and Python.

use lamina_core::runtime::Executor;
use lamina_http::{serve, Body, Config, Handler, Method, Request, Response};
use lamina_unix::devices::HostClock;
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct Site;

static BIG: [u8; 100_000] = [b'x'; 100_000];

impl Handler for Site {
    async fn handle(&self, request: &Request) -> Response {
        match (&request.method, request.path()) {
            (Method::Get | Method::Head, "/") => Response::new(200, Body::Static(b"hello\n"))
                .with_header("Content-Type", "text/plain"),
            (Method::Get | Method::Head, "/big") => Response::new(200, Body::Static(&BIG)),
            // The body back, and its length for HEAD without a body.
            (Method::Other(m), "/echo") if m == "PUT" => {
                Response::new(200, Body::Owned(request.body.clone()))
            }
            (Method::Head, "/length") => {
                Response::new(200, Body::Empty).with_header("Content-Length", "12345")
            }
            (Method::Get | Method::Head, _) => Response::error(404),
            _ => Response::error(405).with_header("Allow", "GET, HEAD"),
        }
    }
}

/// Starts the server on a free loopback port in a thread of its own.
fn start(config: Config) -> u16 {
    start_with(config, |_| Site)
}

/// Starts the server with the handler `make` builds (given the runtime)
/// on a free loopback port in a thread of its own.
fn start_with<H: Handler + 'static>(
    config: Config,
    make: impl FnOnce(lamina_core::runtime::Handle) -> H + Send + 'static,
) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::thread::spawn(move || {
        let reactor = Rc::new(Reactor::new().unwrap());
        let executor = Executor::new(reactor.clone());
        let stack = HostStack::new(reactor.clone(), "127.0.0.1".parse().unwrap());
        let clock = HostClock::new(reactor);
        let rt = executor.handle();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let handler = Rc::new(make(rt.clone()));
        executor
            .block_on(serve(&stack, addr, handler, clock, rt, config))
            .unwrap();
    });
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return port;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not start");
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn curl_sees_correct_headers_head_and_keep_alive() {
    let port = start(Config::default());
    let url = format!("http://127.0.0.1:{port}/");
    let head = curl(&["-i", &url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for needle in [
        "Content-Length: 6\r\n",
        "Content-Type: text/plain\r\n",
        "Server: Lamina\r\n",
        "GMT\r\n",
        "\r\n\r\nhello\n",
    ] {
        assert!(head.contains(needle), "{needle:?} missing:\n{head}");
    }
    let date = head.lines().find(|l| l.starts_with("Date: ")).unwrap();
    assert!(
        date.ends_with(" GMT") && date.len() == "Date: Sun, 06 Nov 1994 08:49:37 GMT".len(),
        "{date}"
    );
    // HEAD: the same headers, no body.
    let h = curl(&["-I", &url]);
    assert!(
        h.contains("Content-Length: 6") && !h.contains("hello"),
        "{h}"
    );
    // Two requests, one connection.
    let both = curl(&[
        "-v",
        &url,
        &format!("http://127.0.0.1:{port}/big"),
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
    ]);
    assert!(
        both.contains("Re-using existing connection")
            || both.contains("Reusing existing connection"),
        "{both}"
    );
    assert!(curl(&["-i", &format!("http://127.0.0.1:{port}/nope")]).starts_with("HTTP/1.1 404"));
    let post = curl(&["-i", "-X", "POST", "--data", "x", &url]);
    assert!(
        post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"),
        "{post}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let port = start(Config::default());
    let answer = raw(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let statuses: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1"))
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found"
        ],
        "{answer}"
    );
    assert_eq!(
        answer.matches("hello\n").count(),
        1,
        "HEAD must not carry the body"
    );
}

#[test]
fn bodies_reach_the_handler_whole_and_pipelining_survives_them() {
    let port = start(Config {
        max_body_bytes: 4 << 20,
        ..Config::default()
    });
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = std::env::temp_dir().join(format!("http-body-{}", std::process::id()));
    std::fs::write(&file, &body).unwrap();
    let echoed = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-T"])
        .arg(&file)
        .arg(format!("http://127.0.0.1:{port}/echo"))
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(echoed.stdout == body, "{} bytes back", echoed.stdout.len());
    // A request right behind a body, in the same segment, is its own.
    let answer = raw(
        port,
        b"PUT /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.contains("\r\n\r\nabcdeHTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello\n"), "{answer}");
    // A HEAD answer may state the length a GET would have.
    let head = raw(port, b"HEAD /length HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(head.matches("Content-Length").count(), 1, "{head}");
    assert!(head.contains("Content-Length: 12345\r\n"), "{head}");
}

#[test]
fn bodies_past_the_memory_limit_are_all_answered_in_turn() {
    // Room for one 600 KB body at a time: four sent at once are all
    // answered, one after the other.
    let port = start(Config {
        max_buffered_body_bytes: 1_000_000,
        ..Config::default()
    });
    let clients: Vec<_> = (0..4u8)
        .map(|n| {
            std::thread::spawn(move || {
                let body = vec![b'a' + n; 600_000];
                let mut request = format!(
                    "PUT /echo HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(&body);
                let answer = raw(port, &request);
                answer.ends_with(std::str::from_utf8(&body).unwrap())
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap(), "a body came back whole");
    }
}

#[test]
fn malformed_and_oversized_requests_get_their_status() {
    let port = start(Config::default());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"BLAH\r\n\r\n".to_vec(), "400"),
        (
            b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
            "400",
        ),
        (
            [b"GET /".as_slice(), &[b'a'; 5000], b" HTTP/1.1\r\n\r\n"].concat(),
            "414",
        ),
        (
            [
                b"GET / HTTP/1.1\r\n".as_slice(),
                &b"X-Y: z\r\n".repeat(200),
                b"\r\n",
            ]
            .concat(),
            "431",
        ),
        (
            b"PUT / HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
            "413",
        ),
    ];
    for (request, status) in cases {
        let answer = raw(port, &request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "expected {status}, got: {answer}"
        );
        assert!(answer.contains("Connection: close"), "{answer}");
    }
}

#[test]
fn slow_clients_do_not_starve_others_and_are_dropped() {
    let config = Config {
        header_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let port = start(config);
    // Ten slowloris clients trickling a header byte every 300 ms.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let start = Instant::now();
                for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                (start.elapsed(), out)
            })
        })
        .collect();
    // Meanwhile normal clients are served at once.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        let t = Instant::now();
        assert!(curl(&[&format!("http://127.0.0.1:{port}/")]).contains("hello"));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    for client in slow {
        let (elapsed, out) = client.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 408"), "slow client got: {out}");
        assert!(
            elapsed < Duration::from_secs(8),
            "slow client held for {elapsed:?}"
        );
    }
}

#[test]
fn python_http_client_keeps_its_connection() {
    let port = start(Config::default());
    let script = format!(
        "import http.client\nc = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         for p in ['/', '/big', '/', '/nope']:\n    c.request('GET', p); r = c.getresponse(); b = r.read(); print(r.status, len(b))\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 6\n200 100000\n200 6\n404 10\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_client_reuses_its_connection() {
    use lamina_http::Client;
    let port = start(Config::default());
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap());
    executor.block_on(async {
        let mut client = Client::new(
            &stack,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "localhost",
        );
        let home = client.get("/").await.unwrap();
        assert_eq!((home.status, home.body.as_slice()), (200, &b"hello\n"[..]));
        assert_eq!(home.header("server"), Some("Lamina"));
        assert!(client.is_connected(), "keep-alive was not kept");
        let big = client.get("/big").await.unwrap();
        assert_eq!((big.status, big.body.len()), (200, 100_000));
        let missing = client.get("/nope").await.unwrap();
        assert_eq!(missing.status, 404);
        assert!(client.is_connected());
    });
    // A closed port is an error, not a hang or a panic.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor, "127.0.0.1".parse().unwrap());
    let refused = executor.block_on(async { Client::new(&stack, closed, "x").get("/").await });
    assert!(refused.is_err());
}

/// An upgrade that waits for the client to say `GO\n` first, as a TLS
/// handshake waits for its ClientHello.
struct WaitForGo;

impl<T: lamina_core::device::TcpStream + 'static> lamina_http::Upgrade<T> for WaitForGo {
    type Stream = T;
    async fn upgrade(&self, mut tcp: T) -> Result<T, lamina_core::device::NetError> {
        let mut go = [0u8; 3];
        tcp.read_exact(&mut go).await?;
        if &go != b"GO\n" {
            return Err(lamina_core::device::NetError::ConnectionReset);
        }
        Ok(tcp)
    }
}

#[test]
fn at_the_connection_limit_the_oldest_stalled_upgrade_makes_way() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::thread::spawn(move || {
        let reactor = Rc::new(Reactor::new().unwrap());
        let executor = Executor::new(reactor.clone());
        let stack = HostStack::new(reactor.clone(), "127.0.0.1".parse().unwrap());
        let clock = HostClock::new(reactor);
        let rt = executor.handle();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = Config {
            max_connections: 4,
            ..Config::default()
        };
        let served = lamina_http::serve_with(
            &stack,
            addr,
            Rc::new(WaitForGo),
            Rc::new(Site),
            clock,
            rt,
            config,
        );
        executor.block_on(served).unwrap();
    });
    let connect = || {
        for _ in 0..100 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start");
    };
    // Four clients that never finish their upgrade fill the server...
    let mut stalled: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...and a fifth is still served, at once.
    let start = Instant::now();
    let mut fifth = connect();
    fifth
        .write_all(b"GO\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    fifth.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The oldest stalled one was dropped for it; the newest still waits.
    let mut byte = [0u8; 1];
    assert_eq!(
        stalled[0].read(&mut byte).unwrap_or(0),
        0,
        "the oldest is closed"
    );
    stalled[3]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        stalled[3].read(&mut byte).is_err(),
        "the newest is still open, waiting"
    );
    drop(stalled);
}

/// Reads one response to a GET of `/` (keep-alive: its 6-byte body).
fn read_hello(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"hello\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn servers_sharing_a_connection_count_share_the_limit() {
    let config = Config {
        max_connections: 2,
        shared_count: Some(lamina_http::ConnectionCount::default()),
        ..Config::default()
    };
    // Each server on a thread of its own: the count is shared all the same.
    let (a, b) = (start(config.clone()), start(config));
    // `start` made a connection to each to see it serve, and closed it:
    // wait until both are counted out again.
    std::thread::sleep(Duration::from_millis(300));
    let connect = |port: u16| {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two kept-alive connections to the first server take both places...
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(a);
            stream.write_all(GET).unwrap();
            assert!(read_hello(&mut stream).unwrap().starts_with("HTTP/1.1 200"));
            stream
        })
        .collect();
    // ...so the second server leaves a new client waiting...
    let mut waiting = connect(b);
    waiting.write_all(GET).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let early = read_hello(&mut waiting);
    assert!(
        early.as_ref().map_or(true, |text| text.is_empty()),
        "served past the shared limit: {early:?}"
    );
    // ...until one of them closes.
    drop(held);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let late = read_hello(&mut waiting).unwrap();
    assert!(late.starts_with("HTTP/1.1 200"), "{late:?}");
}

#[test]
fn a_body_trickled_in_below_the_minimum_rate_gets_408() {
    let config = Config {
        header_timeout: Duration::from_secs(2),
        min_body_rate: 1000,
        ..Config::default()
    };
    let port = start(config);
    // 4,000 bytes at 1,000 bytes/s are allowed 2 + 4 = 6 seconds.
    let put = |chunk: usize, pause: Duration| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
            .unwrap();
        let start = Instant::now();
        let mut writer = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..4000 / chunk {
                // Each piece comes well within a read's 2 s.
                if writer.write_all(&vec![b'a'; chunk]).is_err() {
                    break;
                }
                std::thread::sleep(pause);
            }
        });
        // The answer's first bytes, timed when they come.
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        (
            start.elapsed(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )
    };
    // 100 bytes a second: 40 s for the whole, far past the 6 allowed.
    let (elapsed, out) = put(100, Duration::from_secs(1));
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(9),
        "answered after {elapsed:?}"
    );
    // 1,000 bytes every 500 ms: done in 2 s, inside the allowance.
    let (_, out) = put(1000, Duration::from_millis(500));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Answers every request with a 32 MiB body counted in `budget` until it
/// has been sent.
struct Counted {
    budget: lamina_http::MemoryBudget,
    runtime: lamina_core::runtime::Handle,
}

const COUNTED_BYTES: usize = 32 << 20;

impl Handler for Counted {
    async fn handle(&self, _: &Request) -> Response {
        let hold = self.budget.hold(COUNTED_BYTES as u64, &self.runtime).await;
        Response::new(200, Body::Owned(vec![b'v'; COUNTED_BYTES])).holding(hold)
    }
}

#[test]
fn a_response_holds_its_memory_until_sent_and_the_next_waits_for_it() {
    let budget = lamina_http::MemoryBudget::new(COUNTED_BYTES as u64);
    let shared = budget.clone();
    let port = start_with(Config::default(), move |runtime| Counted {
        budget: shared,
        runtime,
    });
    let get = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        s
    };
    // A reader that does not read: 32 MiB is more than the socket buffers
    // take, so the response is still being sent, and counted.
    let mut slow = get();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(budget.held(), COUNTED_BYTES as u64);
    // The next request waits for the budget: no answer yet.
    let mut next = get();
    next.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(next.read(&mut byte).is_err(), "answered past the budget");
    // Once the slow reader has it all, the next one is served.
    let mut all = Vec::new();
    slow.read_to_end(&mut all).unwrap();
    assert!(all.len() > COUNTED_BYTES && all.starts_with(b"HTTP/1.1 200"));
    next.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    next.read_to_end(&mut all).unwrap();
    assert!(all.len() > COUNTED_BYTES && all.starts_with(b"HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(budget.held(), 0);
}
