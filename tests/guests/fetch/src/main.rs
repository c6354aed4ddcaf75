//! fetch: GETs `--url` (http:// or https://) with lamina-http's client and
//! prints the status and the body's length, or why it failed, and exits 0
//! on a response and 1 on a failure. The TLS client tests boot it against
//! `openssl s_server` with good and bad certificates.
//!
//! Over https it trusts the Mozilla roots and, when `LAMINA_TLS_CA` named a
//! PEM file at build time, the CAs in it (baked in; see build.rs). The URL's
//! host is the name sent (SNI) and checked against the certificate; this
//! guest resolves no names, so a host that is not an IP address needs
//! `--address`.
//!
//! ```text
//! fetch: https://tls.test:4433/ at 10.170.0.1: status 200, 2412 bytes
//! fetch: https://tls.test:4433/ at 10.170.0.1: TLS: invalid peer certificate: certificate expired: ...
//! ```
#![no_std]
#![no_main]

use core::net::IpAddr;
use lamina::prelude::*;
use lamina_http::{Client, ClientError, ClientResponse, Connect, Plain, Url};
use lamina_tls::{ClientStream, Roots, TlsConnector};

include!(concat!(env!("OUT_DIR"), "/EXTRA_CA.rs"));

lamina::devices! {
    /// The stack to connect on and the clock that judges certificates.
    pub struct Devices {
        clock: Clock,
        service: Stack,
    }
}

lamina::boot_args! {
    /// fetch
    pub struct Args {
        /// The URL to GET: http:// or https://.
        pub url: String = "",
        /// The address to connect to; needed when the URL's host is a name.
        pub address: Option<IpAddr> = "",
        /// Judge certificates as if the wall clock said this many seconds
        /// since 1970 (0: a clock never set); the Clock device's time if absent.
        pub wall_clock_secs: Option<u64> = "",
    }
}

/// A clock whose wall time is fixed (its monotonic time is the device's):
/// what a guest booted without a wall clock sees.
#[derive(Clone)]
struct FixedWall<C> {
    clock: C,
    wall_ns: u64,
}

impl<C: Clock> Clock for FixedWall<C> {
    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn wall(&self) -> u64 {
        self.wall_ns
    }
}

/// The TLS connector, saying what each handshake agreed (the tests check
/// the protocol version).
struct Reported<'a>(&'a TlsConnector);

impl<T: TcpStream> Connect<T> for Reported<'_> {
    type Stream = ClientStream<T>;
    const SECURE: bool = true;
    async fn connect(&self, tcp: T, host: &str) -> Result<Self::Stream, ClientError> {
        let stream = Connect::connect(self.0, tcp, host).await?;
        info!(
            "fetch: {host}: {:?}, {:?}, ALPN {:?}",
            stream.protocol_version(),
            stream.cipher_suite(),
            stream
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(&p).into_owned())
        );
        Ok(stream)
    }
}

async fn fetch<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    let url = Url::parse(&args.url).map_err(|e| format!("--url={:?}: {e}", args.url))?;
    let address = args.address.or(url.ip()).ok_or_else(|| {
        format!(
            "{}: give --address (this guest resolves no names)",
            url.host()
        )
    })?;
    let result = if url.is_https() {
        let roots = if EXTRA_CA.is_empty() {
            Roots::Mozilla
        } else {
            Roots::MozillaAndPem(EXTRA_CA)
        };
        let alpn = vec![b"http/1.1".to_vec()];
        let runtime = env.runtime().clone();
        let tls = match args.wall_clock_secs {
            Some(secs) => {
                let clock = FixedWall {
                    clock: devices.clock,
                    wall_ns: secs.saturating_mul(1_000_000_000),
                };
                TlsConnector::new(roots, clock, runtime, alpn)
            }
            None => TlsConnector::new(roots, devices.clock, runtime, alpn),
        }
        .map_err(|e| format!("the TLS client: {e}"))?;
        let connector = Reported(&tls);
        get(
            Client::for_url(&devices.service, &url, address, connector),
            &url,
        )
        .await
    } else {
        get(
            Client::for_url(&devices.service, &url, address, Plain),
            &url,
        )
        .await
    };
    let what = format!("{} at {address}", args.url);
    match result {
        Ok(response) => {
            info!(
                "{what}: status {}, {} bytes",
                response.status,
                response.body.len()
            );
            Ok(())
        }
        Err(error) => Err(format!("{what}: {error}")),
    }
}

/// GETs the URL's path with `client`, if it could be made.
async fn get<S, C>(
    client: Result<Client<'_, S, C>, ClientError>,
    url: &Url,
) -> Result<ClientResponse, ClientError>
where
    S: Stack,
    C: lamina_http::Connect<S::TcpStream>,
{
    client?.get(url.path()).await
}

lamina::main!(fetch);
