//! A load generator for HTTPS servers that makes every request a full TLS
//! handshake: each of --connections threads connects, runs a TLS 1.3
//! handshake (TLS_AES_128_GCM_SHA256, X25519, no session resumption: no
//! ticket or PSK is ever offered), sends `GET PATH` with `Connection:
//! close`, reads the whole response and the server's close, and starts
//! over, until --seconds have passed. With one connection it measures the
//! handshake latency at low load.
//!
//! Written here rather than using wrk because wrk resumes TLS sessions on
//! reconnect (it keeps the session across SSL_clear), so `wrk -H
//! 'Connection: close'` measures resumed handshakes, not full ones; and
//! `openssl s_time` has no concurrency and no latency figures.
//!
//! The client does not verify the server's certificate or its handshake
//! signature: like wrk (SSL_VERIFY_NONE), it is a load generator, and
//! verifying would make it cost more CPU per handshake than the server on a
//! machine where both share the cores. Check the certificate with a real
//! client (curl --cacert) before measuring.
//!
//! usage: tls-load ADDR:PORT [--connections N] [--seconds S] [--name SNI] [--path PATH]
//!
//! Prints one line: handshakes/s, handshake latency p50/p99 (from the TCP
//! connection's establishment to the end of the client's handshake), the
//! negotiated parameters; exits 1 if any request failed or none succeeded.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    addr: SocketAddr,
    connections: usize,
    seconds: f64,
    name: String,
    path: String,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().ok_or("usage: tls-load ADDR:PORT [options]")?;
    let mut options = Options {
        addr: addr
            .parse()
            .map_err(|_| format!("'{addr}' is not ADDR:PORT"))?,
        connections: 1,
        seconds: 5.0,
        name: "localhost".into(),
        path: "/".into(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| *n > 0.0)
                .ok_or(format!("{flag}: '{value}' is not a positive number"))
        };
        match flag.as_str() {
            "--connections" => options.connections = number()? as usize,
            "--seconds" => options.seconds = number()?,
            "--name" => options.name = value,
            "--path" => options.path = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(options)
}

/// Accepts any certificate and signature (see the module comment), while
/// offering the schemes the provider can check, so that the server signs
/// with the same scheme it would for a verifying client.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS 1.3 only, TLS_AES_128_GCM_SHA256 only, X25519 only, no resumption.
fn config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![provider::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![provider::kx_group::X25519],
        ..provider::default_provider()
    });
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What one connection negotiated and how long its handshake took.
struct Outcome {
    handshake: Duration,
    negotiated: String,
    response_bytes: usize,
}

/// One connection: handshake, one request, the whole response, the close.
fn one_request(o: &Options, config: &Arc<ClientConfig>, request: &[u8]) -> Result<Outcome, String> {
    let name = ServerName::try_from(o.name.clone()).map_err(|e| format!("--name: {e}"))?;
    let mut tcp = TcpStream::connect_timeout(&o.addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(10))).ok();
    tcp.set_nodelay(true).ok();
    let mut conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let start = Instant::now();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let handshake = start.elapsed();
    if conn.handshake_kind() != Some(HandshakeKind::Full) {
        return Err(format!("not a full handshake: {:?}", conn.handshake_kind()));
    }
    let negotiated = format!(
        "{:?} {:?} {:?}",
        conn.protocol_version().ok_or("no protocol version")?,
        conn.negotiated_cipher_suite()
            .ok_or("no cipher suite")?
            .suite(),
        conn.negotiated_key_exchange_group()
            .ok_or("no key exchange")?
            .name(),
    );
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(request)
        .map_err(|e| format!("request: {e}"))?;
    let response = read_response(&mut tls)?;
    Ok(Outcome {
        handshake,
        negotiated,
        response_bytes: response,
    })
}

/// Reads a `200` response to its end (by Content-Length), then until the
/// server closes; returns the response's size.
fn read_response(tls: &mut impl Read) -> Result<usize, String> {
    let mut data = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    let mut complete_at = None;
    loop {
        let n = match tls.read(&mut buf) {
            Ok(n) => n,
            // A server that closes without close_notify after the whole
            // response has still answered.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && complete_at.is_some() => 0,
            Err(e) => return Err(format!("response: {e} after {} bytes", data.len())),
        };
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        if complete_at.is_none() {
            complete_at = response_length(&data)?;
        }
    }
    match complete_at {
        Some(length) if data.len() == length => Ok(length),
        Some(length) => Err(format!(
            "response: {} bytes where Content-Length says {length}",
            data.len()
        )),
        None => Err(format!("response: incomplete ({} bytes)", data.len())),
    }
}

/// The whole response's length once its head has arrived and says `200`.
fn response_length(data: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&data[..end]);
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "response: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or("response: no Content-Length")?;
    let total = end + 4 + length;
    Ok((data.len() >= total).then_some(total))
}

/// The `q` quantile of sorted `values`, in milliseconds.
fn quantile_ms(values: &[Duration], q: f64) -> f64 {
    let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[index].as_secs_f64() * 1e3
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tls-load: {e}");
            std::process::exit(2);
        }
    };
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls-load: {e}");
            std::process::exit(2);
        }
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        o.path, o.name
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let per_thread: Vec<(Vec<Outcome>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.connections)
            .map(|_| {
                s.spawn(|| {
                    let (mut done, mut failed) = (Vec::new(), Vec::new());
                    while Instant::now() < deadline {
                        match one_request(&o, &config, request.as_bytes()) {
                            Ok(outcome) => done.push(outcome),
                            Err(e) => failed.push(e),
                        }
                    }
                    (done, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), vec!["panicked".into()]))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let (outcomes, errors): (Vec<Outcome>, Vec<String>) = per_thread.into_iter().fold(
        (Vec::new(), Vec::new()),
        |(mut outcomes, mut errors), (done, failed)| {
            outcomes.extend(done);
            errors.extend(failed);
            (outcomes, errors)
        },
    );
    for e in errors.iter().take(5) {
        eprintln!("tls-load: {e}");
    }
    if outcomes.is_empty() {
        eprintln!("tls-load: no request succeeded");
        std::process::exit(1);
    }
    let mut handshakes: Vec<Duration> = outcomes.iter().map(|o| o.handshake).collect();
    handshakes.sort();
    println!(
        "{} full handshakes in {elapsed:.2} s: {:.1} handshakes/s; handshake p50 {:.3} ms p99 {:.3} ms; \
         {} errors; {}; {}-byte response",
        outcomes.len(),
        outcomes.len() as f64 / elapsed,
        quantile_ms(&handshakes, 0.50),
        quantile_ms(&handshakes, 0.99),
        errors.len(),
        outcomes[0].negotiated,
        outcomes[0].response_bytes,
    );
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
