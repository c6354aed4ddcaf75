//! Website: Lamina's documentation, served by a unikernel.
//!
//! The pages in `site/` are baked into the image at build time (see
//! `build.rs`); at run time nothing is read from anywhere. Run it with
//!
//! ```text
//! lamina run --release website --port 8080:80     # then open http://127.0.0.1:8080/
//! ```
#![no_std]
#![no_main]

use core::net::{Ipv4Addr, SocketAddr};
use lamina::prelude::*;
use lamina_http::{serve, Config, StaticFiles};

include!(concat!(env!("OUT_DIR"), "/SITE.rs"));

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
    }
}

async fn website<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    let stack = devices.service;
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    info!("website: {} files baked in", SITE.files().len());
    let handler = Rc::new(StaticFiles::new(&SITE));
    serve(
        &stack,
        address,
        handler,
        devices.clock,
        env.runtime().clone(),
        Config::default(),
    )
    .await
    .map_err(|e| format!("cannot serve on port {}: {e}", args.port))
}

use lamina::alloc::rc::Rc;

lamina::main!(website);
