//! What an idle TLS connection costs: the heap bytes a server holds per
//! connection once its handshake is done and the client is quiet, counted
//! by an allocator that attributes every byte to the thread that asked.
//! The clients are Python's ssl, in another process.

use lamina_core::device::{Stack, TcpListener};
use lamina_core::runtime::Executor;
use lamina_tls::{Identities, ServerOptions, TlsAcceptor};
use lamina_unix::devices::HostClock;
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;

/// Counts the live heap bytes of each thread.
struct PerThread;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the counter is a
// thread-local Cell, which allocates nothing.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| l.set(l.get() + layout.size() as isize));
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize));
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThread = PerThread;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// A self-signed ECDSA certificate for `localhost` made by openssl in a
/// fresh directory, as the server's one identity; and the directory.
fn test_identity(tag: &str) -> (Identities, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("lamina-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "site.key",
            "-out",
            "site.crt",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(ok.success());
    let mut ids = Identities::new();
    ids.add_pem(
        "site",
        &std::fs::read(dir.join("site.crt")).unwrap(),
        &std::fs::read(dir.join("site.key")).unwrap(),
    )
    .unwrap();
    (ids, dir)
}

/// Bytes per idle connection above which the test fails: what the crate
/// documents (an idle connection holds its keys and rustls's state, no
/// buffers).
const BOUND: isize = 8 * 1024;

#[test]
fn an_idle_tls_connection_holds_a_few_kilobytes() {
    const CONNECTIONS: usize = 200;
    let (ids, dir) = test_identity("mem");

    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor.clone(), "127.0.0.1".parse().unwrap());
    let clock = HostClock::new(reactor);
    let rt = executor.handle();
    let tls = TlsAcceptor::new(ids, clock, rt.clone(), ServerOptions::default()).unwrap();
    let listener = executor
        .block_on(stack.tcp_listen(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    let port = listener.local_addr().port();

    // The clients: open every connection (TLS 1.3 and 1.2 alternately),
    // read nothing more, say so, and wait to be killed.
    let script = r#"
import socket, ssl, sys, time
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(n):
    ctx = ssl.create_default_context(cafile=ca)
    if i % 2:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    conns.append(ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"))
print("open", flush=True)
time.sleep(600)
"#;
    let mut clients = Command::new("python3")
        .args(["-c", script, &port.to_string(), &CONNECTIONS.to_string()])
        .arg(dir.join("site.crt"))
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 is installed");

    // Warm up once (rustls and ring set up their tables on first use), then
    // count what the rest hold.
    let mut streams = Vec::new();
    let mut before = 0;
    executor.block_on(async {
        for i in 0..CONNECTIONS {
            let (tcp, _) = listener.accept().await.unwrap();
            streams.push(tls.accept(tcp).await.expect("handshake"));
            if i == 0 {
                before = live();
            }
        }
    });
    let per_connection = (live() - before) / (CONNECTIONS as isize - 1);
    let _ = clients.kill();
    let _ = clients.wait();
    eprintln!("an idle TLS connection (server side, TLS 1.3 and 1.2 alike, with its unix-target TCP stream): {per_connection} bytes");
    assert!(per_connection > 0);
    assert!(
        per_connection <= BOUND,
        "{per_connection} bytes per idle connection, more than {BOUND}"
    );
    drop(streams);
}

/// Bytes per half-open handshake above which the test fails.
const HALF_OPEN_BOUND: isize = 8 * 1024;

#[test]
fn a_half_open_handshake_holds_a_few_kilobytes() {
    const CONNECTIONS: usize = 200;
    let (ids, _dir) = test_identity("half");
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor.clone(), "127.0.0.1".parse().unwrap());
    let clock = HostClock::new(reactor);
    let rt = executor.handle();
    let tls = Rc::new(TlsAcceptor::new(ids, clock, rt.clone(), ServerOptions::default()).unwrap());
    let listener = executor
        .block_on(stack.tcp_listen(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    let port = listener.local_addr().port();
    // Each client sends the first 300 bytes of a real ClientHello and stalls.
    let script = r#"
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
s = ctx.wrap_bio(i, o, server_hostname="localhost")
try:
    s.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = o.read()
conns = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(hello[:300])
    conns.append(c)
time.sleep(600)
"#;
    let mut clients = Command::new("python3")
        .args(["-c", script, &port.to_string(), &CONNECTIONS.to_string()])
        .spawn()
        .expect("python3 is installed");
    let mut tasks = Vec::new();
    let mut before = 0;
    let mut per_connection = 0;
    executor.block_on(async {
        for i in 0..CONNECTIONS {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            tasks.push(rt.spawn(async move { tls.accept(tcp).await.is_ok() }));
            if i == 0 {
                before = live();
            }
        }
        // Let every handshake read what its client sent.
        rt.sleep(lamina_core::runtime::Duration::from_millis(500))
            .await;
        per_connection = (live() - before) / (CONNECTIONS as isize - 1);
    });
    let _ = clients.kill();
    let _ = clients.wait();
    let finished = tasks.iter().filter(|t| t.is_finished()).count();
    assert_eq!(
        finished, 0,
        "every handshake still waits for the rest of its ClientHello"
    );
    eprintln!("a half-open TLS handshake (server side, its task and unix-target TCP stream): {per_connection} bytes");
    assert!(per_connection > 0);
    assert!(
        per_connection <= HALF_OPEN_BOUND,
        "{per_connection} bytes per half-open handshake, more than {HALF_OPEN_BOUND}"
    );
    drop(tasks);
}
