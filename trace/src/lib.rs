//! # lamina-trace: what a unikernel did, and when
//!
//! Whole-stack tracing in three pieces, all in this dependency-free crate so
//! that the guest (which records) and the host (which reads) share one
//! definition of the format:
//!
//! | module | what | who uses it |
//! |--------|------|-------------|
//! | [`record`] | the record format: 64-bit words, a header word, a time, a payload, strings | both |
//! | [`ring`]   | the ring in guest memory the guest records into without allocating, and how a consumer drains it | guest (producer), tender or target (consumer) |
//! | [`file`]   | the trace file: a header, then the drained records | host |
//! | `chrome`   | export to Chrome trace-event JSON, which Perfetto and speedscope open (feature `std`) | host |
//! | `html`     | a self-contained HTML page drawing the trace: task rows, wake-up arrows, TCP counters (feature `std`) | host |
//!
//! The guest never formats anything: recording an event is a few stores
//! into the ring, and when the ring is full the event is counted as dropped
//! instead (the guest never waits for its consumer). Everything else happens
//! on the host, from the file.
//!
//! Times are nanoseconds of the guest's monotonic clock. On unix and spt that
//! clock is the host's `CLOCK_MONOTONIC`; on hvt the tender records the
//! offset between the two in the file header, so tender and guest events
//! share one timeline.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod chrome;
pub mod file;
#[cfg(feature = "std")]
pub mod html;
pub mod record;
pub mod ring;

pub use record::{Event, Kind, Track};
pub use ring::Ring;
