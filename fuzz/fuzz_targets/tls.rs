//! Bytes from a peer, through lamina-tls: the first byte picks the side.
//! Even: the server (TlsAcceptor: ClientHello and everything after it,
//! then an echo of what decrypts); odd: the client (TlsConnector: the
//! server's flight). The rest of the first byte sets how the bytes arrive
//! (all at once, or in reads of 8 times that many), over an in-memory
//! connection on a simulated clock; the handshake timeout fires on it.
//! Seeds: real ClientHellos and TLS 1.2 server flights (fuzz/corpus/tls).
#![no_main]

use lamina_core::device::{Clock, NetError, TcpRead, TcpStream, TcpWrite};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_tls::{Identities, Roots, ServerOptions, TlsAcceptor, TlsConnector};
use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

/// A self-signed certificate for `localhost` and its key, made for this
/// target alone (valid until 2126; it protects nothing).
const CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBljCCATugAwIBAgIUCHrEro1oUGxoPhgMw+kgQCFZ7QQwCgYIKoZIzj0EAwIw\n\
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEzMDA1MDAzNloYDzIxMjYxMTA2\n\
MDUwMDM2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n\
PQMBBwNCAASb7zP6CC1KnxIORD62Xxool9+g72YNRrdkWNFLKpcMdz25Hb5Q0Kws\n\
ErbOrUV57zIwMMuj55IUTFtSnwLMllUqo2kwZzAdBgNVHQ4EFgQUP/5aDPSPbRu9\n\
2zqfirjAqHFYB3IwHwYDVR0jBBgwFoAUP/5aDPSPbRu92zqfirjAqHFYB3IwDwYD\n\
VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID\n\
SQAwRgIhAKPZeCITHRL+4bMl7pR7MIAbi4Ysm4czSgInyqr8ksxZAiEAl2q1A8cp\n\
pzPVOhaTlm5aNN6TG7bBSjzzM0tTBRFDfso=\n\
-----END CERTIFICATE-----\n";
const KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtBkqs+5DmQ8rbo21\n\
aKm7IXmjaqFX6lhsTZGEiKIWZpWhRANCAASb7zP6CC1KnxIORD62Xxool9+g72YN\n\
RrdkWNFLKpcMdz25Hb5Q0KwsErbOrUV57zIwMMuj55IUTFtSnwLMllUq\n\
-----END PRIVATE KEY-----\n";

/// Time that jumps to each deadline.
#[derive(Default)]
struct SimTime(Cell<u64>);

impl Park for SimTime {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.get())
    }
    fn park(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.0.set(self.0.get().max(d.as_nanos()));
        }
    }
}

#[derive(Clone)]
struct SimClock(Rc<SimTime>);

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn wall(&self) -> u64 {
        1_800_000_000_000_000_000 + self.0 .0.get()
    }
}

/// The peer's bytes, handed out `chunk` at a time; what we send is dropped.
struct Peer {
    input: Vec<u8>,
    read: usize,
    chunk: usize,
    sent: usize,
}

/// Our end of the connection, or either half of it.
struct Stream(Rc<RefCell<Peer>>);

impl TcpRead for Stream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let mut peer = self.0.borrow_mut();
        let n = buf.len().min(peer.chunk).min(peer.input.len() - peer.read);
        buf[..n].copy_from_slice(&peer.input[peer.read..peer.read + n]);
        peer.read += n;
        Ok(n)
    }
    fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], 40000))
    }
}

impl TcpWrite for Stream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        self.0.borrow_mut().sent += buf.len();
        Ok(buf.len())
    }
    async fn shutdown(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}

impl TcpStream for Stream {
    type ReadHalf = Stream;
    type WriteHalf = Stream;
    fn into_split(self) -> (Stream, Stream) {
        (Stream(self.0.clone()), self)
    }
}

thread_local! {
    /// The server's certificate and key, read once: parsing them and
    /// deriving the public key was a sixth of an execution, and they are
    /// not the input.
    static IDENTITIES: Identities = {
        let mut ids = Identities::new();
        ids.add_pem("localhost", CERT.as_bytes(), KEY.as_bytes())
            .expect("the fuzz certificate");
        ids
    };
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, input)) = bytes.split_first() else {
        return;
    };
    let chunk = match mode >> 1 {
        0 => usize::MAX,
        n => usize::from(n) * 8,
    };
    let peer = Rc::new(RefCell::new(Peer {
        input: input.to_vec(),
        read: 0,
        chunk,
        sent: 0,
    }));
    let time = Rc::new(SimTime::default());
    let executor = Executor::new(time.clone());
    let rt = executor.handle();
    let clock = SimClock(time);
    let stream = Stream(peer.clone());
    if mode & 1 == 0 {
        let ids = IDENTITIES.with(Identities::clone);
        let tls = TlsAcceptor::new(ids, clock, rt.clone(), ServerOptions::default()).unwrap();
        executor.block_on(async {
            let Ok(mut stream) = tls.accept(stream).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        });
    } else {
        let connector = TlsConnector::new(
            Roots::Pem(CERT.as_bytes()),
            clock,
            rt.clone(),
            vec![b"http/1.1".to_vec()],
        )
        .unwrap();
        executor.block_on(async {
            let Ok(mut stream) = connector.connect(stream, "localhost").await else {
                return;
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
    // Everything the peer sent was looked at, or the connection ended.
    let peer = peer.borrow();
    assert!(peer.read <= peer.input.len());
});
