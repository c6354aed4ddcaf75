//! # lamina-dns: DNS for Lamina applications
//!
//! | module | what |
//! |--------|------|
//! | [`wire`] | the DNS message format (RFC 1035, EDNS(0) per RFC 6891) as checked views, and a builder with name compression and truncation |
//! | [`resolver`] | a stub resolver for applications: addresses and any record type, over UDP with retries and TCP, cached |
//! | [`server`] | serving over UDP and TCP (RFC 7766), generic over the Stack trait |
//! | [`zone`] | authoritative zone data: the RFC 1035 master-file reader (build time) and the baked, indexed zone the server answers from |
//!
//! Names travel between modules in uncompressed wire form (length-prefixed
//! labels ending with the root's zero byte); lookups use the ASCII-lowercased
//! form. Record data is kept in uncompressed wire form too, so the answer
//! builder is the one place that compresses.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
// The master-file reader (build scripts) reads files.
#[cfg(feature = "zonefile")]
extern crate std;

pub mod resolver;
pub mod server;
pub mod types;
pub mod wire;
pub mod zone;

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use types::{Class, Opcode, Rcode, Rtype};
