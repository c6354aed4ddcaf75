//! # lamina-http: HTTP/1.1 for Lamina applications
//!
//! A server generic over the [`Stack`](lamina_core::device::Stack) trait, so
//! the same site runs as a Linux process and as a unikernel.
//!
//! | module | what |
//! |--------|------|
//! | [`server`] | accept loop, one task per connection: keep-alive, pipelining, limits, timeouts |
//! | [`request`] | a parsed request (httparse underneath) |
//! | [`response`] | responses and their serialisation |
//! | [`date`] | IMF-fixdate for the `Date` header |
//! | [`https`] | HTTPS: TLS under the server (feature `tls`), redirect to HTTPS, HSTS |
//!
//! What the server guarantees: requests on a connection are answered in
//! order; a malformed request gets 400, an oversized one 413, 414 or 431,
//! then the connection closes; a client that sends headers too slowly
//! (slowloris) or idles too long is dropped without affecting others.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(async_fn_in_trait)]

extern crate alloc;

pub mod client;
pub mod date;
pub mod files;
pub mod https;
pub mod request;
pub mod response;
pub mod server;

pub use client::{Client, ClientError, ClientResponse, Connect, Url};
pub use files::{percent_decode, StaticFiles};
pub use https::{Hsts, RedirectToHttps};
pub use request::{Method, Request};
pub use response::{Body, Response};
pub use server::{
    serve, serve_with, Config, ConnectionCount, Handler, MemoryBudget, MemoryHold, Plain, Upgrade,
};
