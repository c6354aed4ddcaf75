//! DNS: an authoritative DNS server unikernel.
//!
//! The zones in `zones/` (one RFC 1035 master file per zone, named after
//! its origin) are read and checked at build time and baked into the image
//! (see `build.rs`); at run time nothing is read from anywhere. Queries are
//! answered over UDP and TCP on one port. Run it with
//!
//! ```text
//! lamina run examples/dns -- --port=5353 --log-queries   # then: dig @127.0.0.1 -p 5353 www.example.com
//! lamina run -t hvt examples/dns --port 5353:53/udp --port 5353:53 -- --log-queries
//! ```
//!
//! Zone transfers (AXFR, over TCP) are refused unless the peer is in
//! `--axfr-allow` (`--axfr-allow=10.0.0.1,192.0.2.0/24`).
#![no_std]
#![no_main]

use core::net::{Ipv4Addr, SocketAddr};
use lamina::prelude::*;
use lamina_dns::server::{Authority, Config, PeerPrefix, Server};
use lamina_dns::zone::Zones;

include!(concat!(env!("OUT_DIR"), "/ZONES.rs"));

lamina::devices! {
    /// The stack to answer on.
    pub struct Devices {
        service: Stack,
    }
}

lamina::boot_args! {
    /// DNS
    pub struct Args {
        /// UDP and TCP port to answer on.
        pub port: u16 = "53",
        /// Addresses or networks allowed zone transfers (AXFR), comma-separated: 10.0.0.1,192.0.2.0/24.
        pub axfr_allow: String = "",
        /// Log one line per query: peer, name, type, response code, size.
        pub log_queries: bool = "false",
        /// Close a TCP connection without a query for this long.
        pub idle_timeout: Duration = "10s",
        /// Most TCP connections served at once.
        pub max_connections: usize = "100",
    }
}

async fn dns<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    let zones = Zones::from_baked(ZONES).map_err(|e| format!("the baked zones: {e}"))?;
    for zone in zones.iter() {
        info!(
            "dns: zone {}",
            lamina_dns::zone::name::Display(zone.origin())
        );
    }
    let peers = axfr_peers(&args.axfr_allow)?;
    for peer in &peers {
        info!("dns: zone transfers allowed to {peer:?}");
    }
    let authority = Authority::new(zones).allow_axfr(peers);
    let config = Config {
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        log_queries: args.log_queries,
        ..Config::default()
    };
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    let server = Server::bind(
        &devices.service,
        address,
        authority,
        env.runtime().clone(),
        config,
    )
    .await
    .map_err(|e| format!("cannot serve on port {}: {e}", args.port))?;
    server.run().await;
    Ok(())
}

/// The prefixes of `--axfr-allow`: addresses or networks, comma-separated.
fn axfr_peers(list: &str) -> Result<Vec<PeerPrefix>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse()
                .map_err(|e| format!("--axfr-allow: '{item}': {e}"))
        })
        .collect()
}

lamina::main!(dns);
