//! conformance: the device conformance suites of `lamina-conformance` on
//! the target this is built for (unix, spt, hvt, virtio), one report per
//! trait on the console, exit status 0 only if every check passed.
//!
//! With `--role=peer` it is instead the Stack suite's peer
//! (`lamina_conformance::peer`), serving until stopped; the cli test runs
//! it as a unix process in the network namespace of the target under test,
//! so the far end of every TCP and UDP check is the Linux kernel's stack.
//!
//! | suite | device | boot arguments |
//! |-------|--------|----------------|
//! | Console, Clock, Random | always | |
//! | Block | `storage`, overwritten | `--block:storage=FILE` |
//! | Netif | `service`, before the stack uses it | `--self-ip`, `--peer` |
//! | Stack | `service` | `--peer` (and `--ipv4` on a unikernel) |
//!
//! A suite whose device or argument is missing is not run, and says so.
#![no_std]
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use lamina::prelude::*;
use lamina_conformance::{block, clock, console, netif, peer, random, stack, Report};

lamina::devices! {
    /// What the suites run on; a suite whose device is not attached is
    /// skipped and says so.
    pub struct Devices {
        console: Console,
        clock: Clock,
        random: Random,
        storage: Option<Block>,
        /// The interface, tested raw before the stack starts on it.
        link: Option<Netif> = "service",
        /// The stack on it, brought up after the Netif suite.
        service: Later<Stack>,
    }
}

lamina::boot_args! {
    /// conformance
    pub struct Args {
        /// `suite` (run the suites) or `peer` (serve the Stack suite's peer).
        pub role: String = "suite",
        /// The peer's IPv4 address (for the Netif and Stack suites).
        pub peer: String = "",
        /// The port the peer serves on.
        pub peer_port: u16 = "7070",
        /// Our IPv4 address on the link, for the Netif suite's ARP.
        pub self_ip: String = "",
    }
}

async fn conformance<P: Platform>(
    env: Env<P>,
    devices: Devices<P>,
    args: Args,
) -> Result<Exit, String> {
    if args.role == "peer" {
        let stack = env.acquire(devices.service).map_err(|e| e.to_string())?;
        info!("conformance peer: serving on port {}", args.peer_port);
        peer::serve(stack, env.runtime().clone(), args.peer_port)
            .await
            .map_err(|e| format!("peer: {e}"))?;
        return Ok(Exit::SUCCESS);
    }
    if args.role != "suite" {
        return Err(format!("--role={}: expected suite or peer", args.role));
    }
    let console = devices.console;
    let peer_ip = parse_ip("--peer", &args.peer)?;
    let self_ip = parse_ip("--self-ip", &args.self_ip)?;
    let mut reports: Vec<Report> = Vec::new();
    reports.push(console::run(&console));
    reports.push(clock::run(&devices.clock, env.runtime()).await);
    reports.push(random::run(&devices.random));
    match devices.storage {
        Some(disk) => reports.push(block::run(&disk).await),
        None => console.write_line("conformance Block not run: no --block:storage"),
    }
    match (devices.link, self_ip, peer_ip) {
        (Some(raw), Some(ip), Some(peer)) => {
            reports.push(netif::run(&raw, env.runtime(), ip, peer).await);
        }
        (None, _, _) => console.write_line("conformance Netif not run: no --net:service"),
        _ => console.write_line("conformance Netif not run: no --self-ip and --peer"),
    }
    match (env.acquire(devices.service), peer_ip) {
        (Ok(net), Some(peer)) => {
            let at = SocketAddr::new(IpAddr::V4(peer), args.peer_port);
            reports.push(stack::run(&net, env.runtime(), at).await);
        }
        (Err(e), _) => console.write_line(&format!("conformance Stack not run: {e}")),
        _ => console.write_line("conformance Stack not run: no --peer"),
    }
    let mut all_passed = true;
    for report in &reports {
        console.write_line(&format!("{report}"));
        all_passed &= report.passed();
    }
    console.write_line(&format!(
        "conformance: {} suites, {}",
        reports.len(),
        if all_passed { "all passed" } else { "FAILED" }
    ));
    Ok(if all_passed { Exit::SUCCESS } else { Exit(1) })
}

fn parse_ip(flag: &str, text: &str) -> Result<Option<Ipv4Addr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{flag}={text}: not an IPv4 address"))
}

lamina::main!(conformance);
