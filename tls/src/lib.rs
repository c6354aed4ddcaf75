//! # lamina-tls: TLS for any TCP service, on rustls
//!
//! A TLS 1.3 and 1.2 server ([`TlsAcceptor`]) and client ([`TlsConnector`])
//! over any [`TcpStream`] of the Stack trait, `no_std` + `alloc`. What comes
//! out is again a [`TcpStream`], so an HTTP server (or anything else written
//! against the trait) runs over TLS unchanged: `Tls<S: TcpStream>`.
//!
//! - Versions TLS 1.3 and 1.2, nothing older; AES-128/256-GCM and
//!   ChaCha20-Poly1305; X25519, P-256 and P-384 key exchange; ECDSA, RSA and
//!   Ed25519 certificates. No renegotiation, no compression (rustls has
//!   neither).
//! - The server chooses among several certificates by SNI ([`Identities`]),
//!   agrees ALPN (`http/1.1` by default), resumes sessions from tickets
//!   sealed under a key drawn at boot, and gives up on a handshake that takes
//!   longer than [`ServerOptions::handshake_timeout`].
//! - The client verifies the server's chain against roots baked into the
//!   image and its name; with no wall clock it refuses to judge certificates.
//! - Memory: nothing is buffered between records; a record in assembly is at
//!   most [`MAX_INCOMING`] bytes. See the crate's README section for what an
//!   idle connection costs.
//!
//! ```text
//! let ids = Identities::from_kv(&CERTS, "").await?;
//! let tls = TlsAcceptor::new(ids, clock, runtime.clone(), ServerOptions::default())?;
//! let (tcp, _) = listener.accept().await?;
//! let mut stream = tls.accept(tcp).await?;      // a TcpStream again
//! stream.write_all(b"hello over TLS").await?;
//! ```
#![no_std]

extern crate alloc;

mod identity;
mod provider;
mod stream;

#[cfg(feature = "check")]
extern crate std;
#[cfg(feature = "check")]
pub mod check;

pub use identity::Identities;
pub use provider::{provider, EARLIEST_PLAUSIBLE_WALL_SECS};
pub use rustls::{CipherSuite, ProtocolVersion};
pub use stream::{Side, TlsReadHalf, TlsStream, TlsWriteHalf, MAX_INCOMING};

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::{Clock, NetError, TcpStream};
use lamina_core::runtime::{Duration, Handle};
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::time_provider::TimeProvider;
use rustls_pki_types::{CertificateDer, ServerName};

/// A server-side TLS stream over the TCP stream `S`.
pub type ServerStream<S> = TlsStream<S, UnbufferedServerConnection>;
/// A client-side TLS stream over the TCP stream `S`.
pub type ClientStream<S> = TlsStream<S, UnbufferedClientConnection>;

/// Why a TLS operation failed.
#[derive(Debug)]
pub enum TlsError {
    /// The TCP connection failed or closed during the handshake.
    Net(NetError),
    /// The peer broke the protocol, or the handshake failed (no common
    /// version or suite, a certificate that does not verify, ...).
    Protocol(rustls::Error),
    /// The handshake took longer than allowed.
    TimedOut,
    /// The peer sent more unprocessable bytes than [`MAX_INCOMING`].
    TooLarge,
    /// A certificate or key could not be used; the message says which.
    Identity(String),
    /// The configuration was refused.
    Config(rustls::Error),
}

impl TlsError {
    /// The error as the TcpStream traits report it (details go to the log).
    pub fn net_error(&self) -> NetError {
        match self {
            TlsError::Net(e) => *e,
            TlsError::TimedOut => NetError::TimedOut,
            TlsError::TooLarge => NetError::TooLarge,
            other => {
                log::debug!("tls: {other}");
                NetError::ConnectionReset
            }
        }
    }
}

impl core::fmt::Display for TlsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TlsError::Net(e) => write!(f, "TCP: {e}"),
            TlsError::Protocol(e) => write!(f, "TLS: {e}"),
            TlsError::TimedOut => f.write_str("TLS handshake timed out"),
            TlsError::TooLarge => f.write_str("TLS message larger than allowed"),
            TlsError::Identity(e) => write!(f, "certificate: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Protocol(e)
    }
}

/// What a [`TlsAcceptor`] offers besides its certificates.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// ALPN protocols, preferred first; a client that offers ALPN but none
    /// of these is refused. Empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    /// Longest time from the TCP accept to the end of the handshake.
    pub handshake_timeout: Duration,
    /// Offer TLS 1.2 besides 1.3.
    pub tls12: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            alpn: vec![b"http/1.1".to_vec()],
            handshake_timeout: Duration::from_secs(10),
            tls12: true,
        }
    }
}

/// TLS 1.3 alone.
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if tls12 {
        rustls::ALL_VERSIONS
    } else {
        &TLS13_ONLY
    }
}

/// Accepts TLS connections: the server side.
pub struct TlsAcceptor {
    config: Arc<rustls::ServerConfig>,
    clock: Box<dyn Clock>,
    wall: Arc<provider::WallTime>,
    runtime: Handle,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// A server presenting `identities`, with `clock`'s wall time for
    /// session tickets, running handshakes under `runtime`'s timers.
    pub fn new<C>(
        identities: Identities,
        clock: C,
        runtime: Handle,
        options: ServerOptions,
    ) -> Result<Self, TlsError>
    where
        C: Clock + 'static,
    {
        if identities.is_empty() {
            return Err(TlsError::Identity("no certificate to serve".into()));
        }
        let provider = provider();
        let wall = Arc::new(provider::WallTime::default());
        wall.set(clock.wall());
        let time: Arc<dyn TimeProvider> = wall.clone();
        let mut config = rustls::ServerConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(versions(options.tls12))
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(identity::Resolver(identities)));
        config.alpn_protocols = options.alpn;
        config.ticketer =
            Arc::new(provider::Ticketer::new(provider, time).map_err(TlsError::Config)?);
        // One ticket per full handshake is enough for a browser; each costs
        // an AEAD seal and a record.
        config.send_tls13_tickets = 1;
        Ok(TlsAcceptor {
            config: Arc::new(config),
            clock: Box::new(clock),
            wall,
            runtime,
            handshake_timeout: options.handshake_timeout,
        })
    }

    /// Runs the server side of a handshake on `tcp`; the stream is ready for
    /// application data. Fails after the handshake timeout.
    pub async fn accept<S: TcpStream>(&self, mut tcp: S) -> Result<ServerStream<S>, TlsError> {
        self.wall.set(self.clock.wall());
        let conn =
            UnbufferedServerConnection::new(self.config.clone()).map_err(TlsError::Config)?;
        let session = self
            .runtime
            .timeout(self.handshake_timeout, stream::handshake(conn, &mut tcp))
            .await
            .map_err(|_| TlsError::TimedOut)??;
        Ok(TlsStream::new(tcp, session))
    }
}

/// The roots a [`TlsConnector`] trusts.
pub enum Roots<'a> {
    /// The Mozilla root program's CAs (webpki-roots), baked into the image.
    Mozilla,
    /// The CA certificates in this PEM text (a private CA, a test CA).
    Pem(&'a [u8]),
    /// Both: the Mozilla roots and the CA certificates in this PEM text.
    MozillaAndPem(&'a [u8]),
}

/// Opens TLS connections: the client side.
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    clock: Box<dyn Clock>,
    wall: Arc<provider::WallTime>,
    runtime: Handle,
    handshake_timeout: Duration,
}

impl TlsConnector {
    /// A client trusting `roots`, judging certificates by `clock`'s wall
    /// time (an unset wall clock fails every handshake rather than accept
    /// an expired certificate), offering ALPN `alpn` (may be empty).
    pub fn new<C>(
        roots: Roots<'_>,
        clock: C,
        runtime: Handle,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Self, TlsError>
    where
        C: Clock + 'static,
    {
        let mut store = rustls::RootCertStore::empty();
        if matches!(roots, Roots::Mozilla | Roots::MozillaAndPem(_)) {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Roots::Pem(pem) | Roots::MozillaAndPem(pem) = roots {
            use rustls_pki_types::pem::PemObject;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| TlsError::Identity(alloc::format!("CA certificate: {e}")))?;
                store.add(cert).map_err(TlsError::Config)?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsError::Identity(
                    "no CA certificate in the PEM text".into(),
                ));
            }
        }
        let wall = Arc::new(provider::WallTime::for_client());
        let time: Arc<dyn TimeProvider> = wall.clone();
        let mut config = rustls::ClientConfig::builder_with_details(provider(), time)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(TlsError::Config)?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        Ok(TlsConnector {
            config: Arc::new(config),
            clock: Box::new(clock),
            wall,
            runtime,
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// Runs the client side of a handshake on `tcp` with the server named
    /// `server_name` (a DNS name or an IP address, checked against its
    /// certificate).
    pub async fn connect<S: TcpStream>(
        &self,
        mut tcp: S,
        server_name: &str,
    ) -> Result<ClientStream<S>, TlsError> {
        let name = ServerName::try_from(server_name)
            .map_err(|_| {
                TlsError::Identity(alloc::format!(
                    "{server_name:?} is not a DNS name or IP address"
                ))
            })?
            .to_owned();
        self.wall.set(self.clock.wall());
        let conn =
            UnbufferedClientConnection::new(self.config.clone(), name).map_err(TlsError::Config)?;
        let session = self
            .runtime
            .timeout(self.handshake_timeout, stream::handshake(conn, &mut tcp))
            .await
            .map_err(|_| TlsError::TimedOut)??;
        Ok(TlsStream::new(tcp, session))
    }
}
