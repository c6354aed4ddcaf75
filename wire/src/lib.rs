//! # lamina-wire: network bytes, read and written without trusting them
//!
//! The byte-level formats that both sides of a Lamina network link handle:
//! the guest's stack (`lamina-net`), the virtio-net driver, and the tenders,
//! which join and split TCP segments for guests that know nothing of
//! offloads. The tenders run on the host with the guest's frames as input,
//! so this crate depends on nothing (not on smoltcp, not on the guest
//! runtime) and forbids `unsafe`.
//!
//! Formats are read through checked views, as smoltcp's `wire` module does:
//! a view wraps a buffer (`T: AsRef<[u8]>`), its `new_checked` constructor
//! checks every length once, and from then on no accessor can panic or read
//! out of bounds. Field byte ranges are named constants in each module's
//! `field` module; a `Repr` parses and emits where a plain value is handier.
//!
//! | module | what |
//! |--------|------|
//! | [`checksum`] | the Internet checksum (RFC 1071): one's-complement sums and folding |
//! | [`vnet`]     | the `virtio_net_hdr` ahead of each frame: a view and a [`vnet::Repr`] |
//! | [`ip`]       | an Ethernet frame carrying TCP or UDP over IPv4 or IPv6: where the transport header is, its pseudo-header |
//! | [`offload`]  | checksum and segmentation offload: verify and complete checksums, join TCP segments into one (TSO) and split them again |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod checksum;
pub mod ip;
pub mod offload;
pub mod vnet;
