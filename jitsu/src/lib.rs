//! # lamina-jitsu: unikernels summoned on demand
//!
//! Jitsu (NSDI 2015) is a DNS server that boots the unikernel behind a name
//! when the name is asked for, and stops it when nobody has asked for a
//! while. `lamina jitsu CONFIG` runs this crate's daemon on the host: std
//! Rust, one thread with `poll(2)` over its sockets and its children.

pub mod config;
pub mod dns;
