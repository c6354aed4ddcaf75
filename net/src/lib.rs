//! # lamina-net: Lamina's TCP/IP stack
//!
//! The [`Stack`](lamina_core::device::Stack) trait over any
//! [`Netif`](lamina_core::device::Netif), built on smoltcp: Ethernet, ARP,
//! IPv4, ICMP echo, UDP, TCP, a DHCPv4 client and IPv6 with neighbour
//! discovery. The unikernel targets use it over their Solo5 network device;
//! the unix target can use it over a tap device.
//!
//! | module | what |
//! |--------|------|
//! | [`device`] | smoltcp's `Device` over a `Netif` |
//! | [`driver`] | the task that moves frames and runs timers |
//! | [`socket`] | TCP listeners and streams, UDP sockets, as async traits |
//! | `park` | idle connections kept out of smoltcp's socket set |
//! | [`config`] | boot arguments: `--ipv4`, `--ipv4-gateway`, buffer sizes |
//!
//! One task (the driver) owns the interface's I/O; sockets share the socket
//! set with it through a `RefCell` and wake it when they have something to
//! send. Nothing blocks: a full send buffer makes `write` wait
//! (back-pressure), a full receive buffer closes the TCP window.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(async_fn_in_trait)]

extern crate alloc;

pub mod config;
pub mod device;
pub mod driver;
mod park;
#[doc(hidden)]
pub mod sim;
pub mod socket;
pub mod trace;

pub use config::{Ipv4Cidr, NetArgs};
pub use driver::{NetStack, NetStats};
