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
use lamina_http::{Config, ConnectionCount, StaticFiles};

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
        /// Most connections served at once, HTTP and HTTPS together (past it
        /// the oldest unfinished TLS handshake is dropped, else new ones
        /// wait). Each costs about 10 KiB besides its TCP buffers: on a
        /// unikernel, a number that does not fit in half the heap is
        /// lowered to what does (the log says so); raise --mem for more.
        pub max_connections: usize = "1024",
        /// Close a kept-alive connection after this long without a request.
        pub idle_timeout: Duration = "60s",
    }
}

/// Heap bytes one connection may hold besides its TCP buffers (which the
/// stack budgets itself, in the other half of the heap): the TLS session
/// in its largest state (a handshake), the HTTP connection, their task, the
/// stack's socket and its slot in the socket table (which grows by
/// doubling), and the allocator's per-allocation overhead. Measured on hvt
/// (bench/tls_idle.py, the heap's bytes in use logged every 2 s): 3,000
/// idle TLS 1.3 connections took 10.7 MiB per 1,000 with their 2 KiB of
/// TCP buffers, so about 9 KiB each besides them; a handshake holds about
/// 2 KiB more than an idle session (tls/tests/memory.rs: 5.2 and 3.4 KiB).
const CONNECTION_BYTES: usize = 12 * 1024;

/// Heap the website holds whatever the number of connections: the parsed
/// certificates and TLS configuration, the file index, the stack's tables.
const BASE_BYTES: usize = 2 << 20;

/// The most connections whose state fits in half of a heap of `heap_bytes`
/// (the other half is the TCP buffers' budget, see `NetArgs::limit_to_heap`).
fn connections_that_fit(heap_bytes: usize) -> usize {
    (heap_bytes / 2).saturating_sub(BASE_BYTES) / CONNECTION_BYTES
}

/// `asked`, or fewer when their state would not fit in the heap (a failed
/// allocation ends a unikernel): said in the log.
fn max_connections(asked: usize, heap_bytes: Option<usize>) -> usize {
    let Some(heap_bytes) = heap_bytes else {
        return asked; // the host's memory (unix)
    };
    let fit = connections_that_fit(heap_bytes).max(1);
    if asked <= fit {
        return asked;
    }
    warn!(
        "website: --max-connections={asked} does not fit in a heap of {} MiB: at most {fit} \
         (about {} KiB each); raise --mem for more",
        heap_bytes >> 20,
        CONNECTION_BYTES / 1024
    );
    fit
}

async fn website<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    info!("website: {} files baked in", SITE.files().len());
    let files = Rc::new(StaticFiles::new(&SITE));
    let config = Config {
        max_connections: max_connections(args.max_connections, env.heap_size()),
        idle_timeout: args.idle_timeout,
        // One limit for HTTP and HTTPS: one heap holds both.
        shared_count: Some(ConnectionCount::default()),
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
