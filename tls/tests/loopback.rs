//! lamina-tls on the unix target over loopback TCP: its server against its
//! own client, Python's ssl and openssl, with certificates made by openssl.

use lamina_core::device::{Clock, Stack, TcpListener, TcpRead, TcpStream, TcpWrite};
use lamina_core::runtime::{Duration, Executor, Handle, Instant};
use lamina_tls::{Identities, Roots, ServerOptions, TlsAcceptor, TlsConnector, TlsError};
use lamina_unix::devices::HostClock;
use lamina_unix::net::HostStack;
use lamina_unix::reactor::Reactor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;

/// A test CA, an ECDSA certificate for `localhost` and an RSA one for
/// `other.test`, made once per test binary with openssl.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    fn identities(&self) -> Identities {
        let mut ids = Identities::new();
        ids.add_pem(
            "localhost",
            &self.read("localhost.crt"),
            &self.read("localhost.key"),
        )
        .unwrap();
        ids.add_pem("other", &self.read("other.crt"), &self.read("other.key"))
            .unwrap();
        ids
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lamina-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=lamina-tls test CA",
            ],
        );
        for (name, key, san) in [
            (
                "localhost",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
                "DNS:localhost,IP:127.0.0.1",
            ),
            ("other", &["-newkey", "rsa:2048"][..], "DNS:other.test"),
        ] {
            let mut args = vec!["req", "-nodes", "-keyout"];
            let key_file = format!("{name}.key");
            let csr = format!("{name}.csr");
            args.push(&key_file);
            args.extend_from_slice(key);
            args.extend_from_slice(&["-out", &csr, "-subj", "/CN=test"]);
            openssl(&dir, &args);
            let ext = format!("{name}.ext");
            std::fs::write(
                dir.join(&ext),
                format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
            )
            .unwrap();
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.crt"),
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        Certs { dir }
    })
}

/// A clock whose wall time is fixed (for a client that must refuse).
#[derive(Clone)]
struct FixedWall(HostClock, u64);

impl Clock for FixedWall {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> u64 {
        self.1
    }
}

/// Runs `f` with a fresh unix-target runtime on this thread.
fn with_runtime<T>(f: impl AsyncFnOnce(HostStack, HostClock, Handle) -> T) -> T {
    let reactor = Rc::new(Reactor::new().unwrap());
    let executor = Executor::new(reactor.clone());
    let stack = HostStack::new(reactor.clone(), "127.0.0.1".parse().unwrap());
    let clock = HostClock::new(reactor);
    let rt = executor.handle();
    executor.block_on(f(stack, clock, rt))
}

/// Starts a TLS echo server in a thread of its own: each connection's bytes
/// come back until the client closes, then close_notify. Returns its port.
fn echo_server(options: ServerOptions) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ids = certs().identities();
    std::thread::spawn(move || {
        with_runtime(async move |stack, clock, rt| {
            let tls = Rc::new(TlsAcceptor::new(ids, clock, rt.clone(), options).unwrap());
            let listener = stack
                .tcp_listen(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = tls.clone();
                rt.spawn(async move {
                    let stream = match tls.accept(tcp).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            eprintln!("echo server: handshake: {e}");
                            return;
                        }
                    };
                    // The halves in two tasks, as a proxy would use them.
                    let (mut reader, mut writer) = stream.into_split();
                    let mut buf = vec![0u8; 7000];
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if writer.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = writer.shutdown().await;
                });
            }
        })
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return port;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the echo server did not start");
}

/// Our client: connects to `port` as `name`, sends `data` from one task
/// while reading the echo in another, returns what came back.
fn client_echo(
    port: u16,
    name: &str,
    clock_wall: Option<u64>,
    data: Vec<u8>,
) -> Result<Vec<u8>, TlsError> {
    let ca = certs().read("ca.crt");
    with_runtime(async move |stack, clock, rt| {
        let wall = clock_wall.unwrap_or_else(|| clock.wall());
        let connector =
            TlsConnector::new(Roots::Pem(&ca), FixedWall(clock, wall), rt.clone(), vec![]).unwrap();
        let tcp = stack
            .tcp_connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(TlsError::Net)?;
        let stream = connector.connect(tcp, name).await?;
        assert_eq!(
            stream.protocol_version(),
            Some(lamina_tls::ProtocolVersion::TLSv1_3)
        );
        let (mut reader, mut writer) = stream.into_split();
        let sender = rt.spawn(async move {
            writer.write_all(&data).await?;
            writer.shutdown().await
        });
        let mut echoed = Vec::new();
        let mut buf = vec![0u8; 5000];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => echoed.extend_from_slice(&buf[..n]),
                Err(e) => return Err(TlsError::Net(e)),
            }
        }
        sender.await.map_err(TlsError::Net)?;
        Ok(echoed)
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_megabyte_echoes_intact_through_split_halves_with_close_notify() {
    let port = echo_server(ServerOptions::default());
    let data = pattern(1 << 20);
    let echoed = client_echo(port, "localhost", None, data.clone()).expect("echo over TLS");
    assert!(
        echoed == data,
        "the echo differs ({} bytes back)",
        echoed.len()
    );
}

#[test]
fn sni_chooses_the_certificate_and_the_client_checks_the_name() {
    let port = echo_server(ServerOptions::default());
    // other.test is only in the RSA certificate: verification passes only
    // if the server chose it.
    assert_eq!(
        client_echo(port, "other.test", None, b"rsa".to_vec()).unwrap(),
        b"rsa"
    );
    assert_eq!(
        client_echo(port, "127.0.0.1", None, b"ip".to_vec()).unwrap(),
        b"ip"
    );
    // A name no certificate has: the default one comes, and fails the check.
    match client_echo(port, "nobody.test", None, b"x".to_vec()) {
        Err(TlsError::Protocol(rustls::Error::InvalidCertificate(e))) => {
            assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}")
        }
        other => panic!("a wrong name must fail verification: {other:?}"),
    }
}

#[test]
fn a_client_without_a_plausible_wall_clock_verifies_nothing() {
    let port = echo_server(ServerOptions::default());
    // 1970 + a few seconds: a unikernel whose wall clock was never set.
    match client_echo(port, "localhost", Some(5_000_000_000), b"x".to_vec()) {
        Err(TlsError::Protocol(rustls::Error::FailedToGetCurrentTime)) => {}
        other => panic!("an unset clock must refuse: {other:?}"),
    }
    // Ten years on, the certificate has expired.
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 10 * 365 * 86400)
        * 1_000_000_000;
    match client_echo(port, "localhost", Some(later), b"x".to_vec()) {
        Err(TlsError::Protocol(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        ))) => {}
        other => panic!("an expired certificate must be refused: {other:?}"),
    }
}

#[test]
fn python_ssl_echoes_over_tls13_and_tls12_and_closes_cleanly() {
    let port = echo_server(ServerOptions::default());
    let script = r#"
import socket, ssl, sys
port, ca, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = ctx.maximum_version = v
with socket.create_connection(("127.0.0.1", port)) as raw:
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.version() == ("TLSv1.3" if version == "1.3" else "TLSv1.2"), s.version()
    data = bytes((i * 13) % 256 for i in range(300000))
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    assert got == data, len(got)
    # close_notify both ways: unwrap() sends ours and waits for the server's.
    version = s.version()
    s.unwrap()
print("ok", version)
"#;
    for version in ["1.3", "1.2"] {
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &port.to_string(),
                certs().dir.join("ca.crt").to_str().unwrap(),
                version,
            ])
            .output()
            .expect("python3 is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.starts_with("ok TLSv1"),
            "python over TLS {version}: {text}"
        );
    }
}

#[test]
fn a_stalled_handshake_is_dropped_after_the_timeout() {
    let port = echo_server(ServerOptions {
        handshake_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    });
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    // Half a ClientHello record, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00])
        .unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap_or(0);
    let waited = start.elapsed();
    assert_eq!(n, 0, "the server closes without a word");
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn garbage_and_old_protocols_get_an_alert_not_a_crash() {
    let port = echo_server(ServerOptions::default());
    use std::io::{Read, Write};
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
        &[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5][..],
    ] {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tcp.write_all(bytes).unwrap();
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply);
        // Nothing but (at most) an alert record.
        assert!(
            reply.is_empty() || reply[0] == 0x15,
            "{bytes:?} -> {reply:?}"
        );
    }
    // TLS 1.1 is refused by openssl's client with a protocol alert.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    assert!(!out.status.success(), "TLS 1.1 must not be accepted");
    // And the server still works.
    assert_eq!(
        client_echo(port, "localhost", None, b"still here".to_vec()).unwrap(),
        b"still here"
    );
}

/// Sessions resume from tickets, with openssl's client.
#[test]
fn openssl_resumes_a_session_from_a_ticket() {
    let port = echo_server(ServerOptions::default());
    let sess = certs().dir.join(format!("sess-{port}.pem"));
    for version in ["-tls1_3", "-tls1_2"] {
        let run = |extra: &[&str]| {
            let mut child = Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &format!("127.0.0.1:{port}"),
                    "-servername",
                    "localhost",
                    version,
                ])
                .args(["-CAfile", certs().dir.join("ca.crt").to_str().unwrap()])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Wait a moment so TLS 1.3's ticket (sent after the handshake) arrives.
            std::thread::sleep(std::time::Duration::from_millis(500));
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let first = run(&["-sess_out", sess.to_str().unwrap()]);
        assert!(first.contains("New, TLSv1"), "{version} first: {first}");
        let second = run(&["-sess_in", sess.to_str().unwrap()]);
        assert!(
            second.contains("Reused, TLSv1"),
            "{version} resumed: {second}"
        );
    }
}
