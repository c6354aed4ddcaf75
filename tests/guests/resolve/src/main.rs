//! resolve: asks the DNS servers its stack knows (`--dns`, or DHCP's
//! option 6) for the addresses of each name in `--names` and the TXT
//! records of `--txt`, prints one line per name, and exits 0. The
//! network tests boot it against a Knot server in a namespace.
//!
//! ```text
//! resolve: servers [10.1.0.1:53]
//! resolve: www.example.test = 192.0.2.1 2001:db8::1
//! resolve: nope.example.test: no such name
//! resolve: big.example.test has 12 TXT records, 2424 bytes
//! ```
#![no_std]
#![no_main]

use lamina::prelude::*;
use lamina_dns::resolver::{Config, Resolver};
use lamina_dns::Rtype;

lamina::devices! {
    /// The stack whose DNS servers are asked, and randomness for query
    /// IDs and source ports.
    pub struct Devices {
        service: Stack,
        random: Random,
    }
}

lamina::boot_args! {
    /// resolve
    pub struct Args {
        /// Names whose addresses to look up, separated by commas.
        pub names: String = "",
        /// A name whose TXT records to fetch.
        pub txt: String = "",
        /// How long to wait for the stack to learn a DNS server (DHCP).
        pub wait: Duration = "20s",
    }
}

async fn resolve<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) -> Result<(), String> {
    let stack = devices.service;
    let deadline = env.now() + args.wait;
    let servers = loop {
        let servers = stack.dns_servers();
        if !servers.is_empty() {
            break servers;
        }
        if env.now() >= deadline {
            return Err(format!("no DNS server known after {:?}", args.wait));
        }
        env.sleep(Duration::from_millis(100)).await;
    };
    info!("resolve: servers {servers:?}");
    let resolver = Resolver::new(
        stack,
        devices.random,
        env.runtime().clone(),
        Config::default(),
    );
    for name in args.names.split(',').filter(|n| !n.is_empty()) {
        match resolver.lookup_ip(name).await {
            Ok(addresses) => {
                let mut line = format!("resolve: {name} =");
                for address in addresses {
                    line.push_str(&format!(" {address}"));
                }
                info!("{line}");
            }
            Err(error) => info!("resolve: {name}: {error}"),
        }
    }
    if !args.txt.is_empty() {
        match resolver.query(&args.txt, Rtype::TXT).await {
            Ok(answer) => info!(
                "resolve: {} has {} TXT records, {} bytes",
                args.txt,
                answer.rdatas.len(),
                answer.rdatas.iter().map(Vec::len).sum::<usize>()
            ),
            Err(error) => info!("resolve: {}: {error}", args.txt),
        }
    }
    Ok(())
}

lamina::main!(resolve);
