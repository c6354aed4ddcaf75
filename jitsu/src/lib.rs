//! # lamina-jitsu: unikernels summoned on demand
//!
//! Jitsu (NSDI 2015) is a DNS server that boots the unikernel behind a name
//! when the name is asked for, and stops it when nobody has asked for a
//! while. `lamina jitsu CONFIG` runs this crate's daemon on the host: std
//! Rust, one thread with `poll(2)` over its sockets and its children.
//!
//! | module | what |
//! |--------|------|
//! | [`config`] | the TOML file: services, addresses, ports, TTLs, stop modes; every error with its line |
//! | [`dns`] | which service a query is for, and the answers (lamina-dns's checked parser and builder) |
//! | [`service`] | one service's life: booting, up, paused, stopped; its tender and lamina-usernet processes |
//! | [`daemon`] | the event loop: DNS over UDP and TCP, held answers, the upstream resolver, socket activation, idle stops |
//! | [`status`] | the status page (text and JSON) and `lamina jitsu status` |
//! | [`tap`] | tap mode's host side: the bridge, each service's persistent tap, ARP answered and summons while stopped, the introductions |
//! | [`probe`] | "is the guest listening?": a TCP connect retried until accepted (tap mode's time to listening) |
//! | [`netdev`] | interface ioctls: bridges, ports, addresses, flags, queue lengths |
//! | [`frame`], [`filter`] | the frames a tap's watch reads and writes, and the BPF filters on the tap |
//!
//! ```text
//! dig www.lamina.test ──> daemon ──(not running)──> lamina-usernet + lamina-hvt
//!                           │ <── "up" (the guest answered a probe) ──┘
//!   answer 127.0.0.2 <──────┘
//! curl http://127.0.0.2/ ──> the daemon's listener ──> lamina-usernet ──> the guest
//! ```

pub mod config;
pub mod daemon;
pub mod dns;
pub mod filter;
pub mod frame;
pub mod netdev;
pub mod network;
pub mod probe;
mod process;
pub mod service;
pub mod status;
pub mod tap;

pub use config::Config;
pub use daemon::Daemon;
pub use service::Programs;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};

/// Set by SIGTERM, SIGINT or SIGHUP: the daemon stops what it started and
/// returns.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
