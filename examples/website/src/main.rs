//! Website: Lamina's documentation, served by a unikernel over HTTP and HTTPS.
//!
//! The pages in `site/` are baked into the image at build time (see
//! `build.rs`), and so are the certificates in `tls/` when there are any; at
//! run time nothing is read from anywhere. Run it with
//!
//! ```text
//! lamina tls dev-cert localhost 127.0.0.1 --dir examples/website/tls
//! lamina run --release website --port 8080:80 --port 8443:443
//! # then open http://127.0.0.1:8080/ and https://localhost:8443/
//! ```
#![no_std]
#![no_main]

use core::future::Future;
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::Poll;
use lamina::prelude::*;
use lamina_http::{serve, serve_with, Config, Hsts, RedirectToHttps, StaticFiles};
use lamina_tls::{Identities, ServerOptions, TlsAcceptor};

include!(concat!(env!("OUT_DIR"), "/SITE.rs"));
include!(concat!(env!("OUT_DIR"), "/CERTS.rs"));

lamina::devices! {
    /// The stack to serve on and the clock for the `Date` header.
    pub struct Devices {
        clock: Clock,
        service: Stack,
    }
}

lamina::boot_args! {
    /// Website
    pub struct Args {
        /// TCP port to serve HTTP on.
        pub port: u16 = "80",
        /// TCP port to serve HTTPS on (when certificates are baked in).
        pub https_port: u16 = "443",
        /// Answer HTTP with a redirect to HTTPS instead of the pages.
        pub redirect_https: bool = "false",
        /// Send HSTS (Strict-Transport-Security) over HTTPS for this many
        /// seconds; 0 sends none.
        pub hsts_max_age: u64 = "0",
        /// Most connections served at once, HTTP and HTTPS each (past it the
        /// oldest unfinished TLS handshake is dropped, else new ones wait).
        /// Each costs a few KiB (about 10 in a TLS handshake): raise it with
        /// the guest's memory.
        pub max_connections: usize = "1024",
    }
}

async fn website<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    let stack = devices.service;
    let runtime = env.runtime().clone();
    info!("website: {} files baked in", SITE.files().len());
    let files = Rc::new(StaticFiles::new(&SITE));
    let config = Config {
        max_connections: args.max_connections,
        ..Config::default()
    };
    let http_address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    let http_error = |e| format!("cannot serve HTTP on port {}: {e}", args.port);

    if CERTS.files().is_empty() {
        info!("website: no certificate baked in (tls/): HTTP only; `lamina tls dev-cert NAME --dir tls` makes one");
        return serve(
            &stack,
            http_address,
            files,
            devices.clock,
            runtime,
            config.clone(),
        )
        .await
        .map_err(http_error);
    }
    let identities = Identities::from_kv(&CERTS, "")
        .await
        .map_err(|e| format!("the baked certificates: {e}"))?;
    let names: Vec<&str> = identities.names().collect();
    info!(
        "website: HTTPS on port {} with {}",
        args.https_port,
        names.join(", ")
    );
    let tls = TlsAcceptor::new(
        identities,
        devices.clock.clone(),
        runtime.clone(),
        ServerOptions::default(),
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let https_address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.https_port));
    let https_handler = Rc::new(Hsts::new(files.clone(), args.hsts_max_age));
    let https = async {
        let served = if args.hsts_max_age > 0 {
            serve_with(
                &stack,
                https_address,
                Rc::new(tls),
                https_handler,
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        } else {
            serve_with(
                &stack,
                https_address,
                Rc::new(tls),
                files.clone(),
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        };
        served.map_err(|e| format!("cannot serve HTTPS on port {}: {e}", args.https_port))
    };
    let http = async {
        let served = if args.redirect_https {
            let redirect = Rc::new(RedirectToHttps {
                port: args.https_port,
            });
            serve(
                &stack,
                http_address,
                redirect,
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        } else {
            serve(
                &stack,
                http_address,
                files.clone(),
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        };
        served.map_err(http_error)
    };
    first(https, http).await
}

/// Runs both servers; they return only on an error, and the first one ends
/// the unikernel with it.
async fn first<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let (mut a, mut b) = (pin!(a), pin!(b));
    core::future::poll_fn(|cx| {
        if let Poll::Ready(done) = a.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        b.as_mut().poll(cx)
    })
    .await
}

use lamina::alloc::rc::Rc;
use lamina::alloc::vec::Vec;

lamina::main!(website);
