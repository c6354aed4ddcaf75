//! # lamina-core: the signatures every Lamina application is written against
//!
//! Lamina applications are `#![no_std]` + `alloc` Rust, generic over small device
//! traits. This crate holds everything that does not depend on a target:
//!
//! | module      | what it holds |
//! |-------------|---------------|
//! | [`device`]  | the device traits: [`Console`], [`Clock`], [`Random`], [`Netif`], [`Stack`], [`Block`], [`KvRead`]/[`KvWrite`] |
//! | [`runtime`] | the single-threaded cooperative executor, timers, `spawn`, `sleep`, `timeout` |
//! | [`args`]    | typed boot-time arguments with `--help` ([`boot_args!`](crate::boot_args)) |
//! | [`declare`] | declaring the application's devices once ([`devices!`](crate::devices)): typed struct, manifest, description |
//! | [`platform`]| the [`Platform`] a target provides and the [`Env`] an application receives |
//! | [`exit`]    | how `main`'s result becomes an exit status |
//! | [`trace`]   | recording trace events: tasks, wake-ups, spans, counters ([`trace_span!`]) |
//!
//! Targets (unix, spt, hvt, virtio) implement the traits in their own crates; the
//! `lamina` facade crate picks one at build time. Nothing here is global: state
//! lives in explicit handles ([`runtime::Handle`], [`Env`]).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Lamina runs one task at a time on one CPU: futures need not be `Send`, so the
// lint that asks for `Send` bounds on trait futures does not apply.
#![allow(async_fn_in_trait)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod args;
pub mod boot;
pub mod declare;
pub mod device;
pub mod exit;
pub mod platform;
pub mod provenance;
pub mod runtime;
pub mod trace;

pub use device::*;
pub use exit::{Exit, IntoExit};
pub use platform::{DeviceError, Env, Platform};
pub use runtime::{Duration, Instant};

/// Logging macros (`info!`, `warn!`, ...). The target installs a logger that
/// writes to its console; `--log=LEVEL` at boot chooses the level.
pub use log;
