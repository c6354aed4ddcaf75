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

#[cfg(not(website_https))]
use core::net::{Ipv4Addr, SocketAddr};
use lamina::prelude::*;
#[cfg(not(website_https))]
use lamina_http::serve;
use lamina_http::{Config, StaticFiles};

// HTTPS exists in the image only when build.rs baked certificates (it sets
// `website_https`): without them, rustls and ring (about 800 KiB) are left
// out, not merely unused.
#[cfg(website_https)]
mod https;

include!(concat!(env!("OUT_DIR"), "/SITE.rs"));
#[cfg(website_https)]
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
        /// Close a kept-alive connection after this long without a request.
        pub idle_timeout: Duration = "60s",
    }
}

async fn website<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    info!("website: {} files baked in", SITE.files().len());
    let files = Rc::new(StaticFiles::new(&SITE));
    let config = Config {
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        ..Config::default()
    };
    #[cfg(website_https)]
    return https::serve_https_and_http(&env, &devices, &args, files, config).await;

    #[cfg(not(website_https))]
    {
        info!("website: no certificate baked in (tls/): HTTP only; `lamina tls dev-cert NAME --dir tls` makes one");
        let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
        serve(
            &devices.service,
            address,
            files,
            devices.clock,
            env.runtime().clone(),
            config,
        )
        .await
        .map_err(|e| format!("cannot serve HTTP on port {}: {e}", args.port))
    }
}

use lamina::alloc::rc::Rc;

lamina::main!(website);
