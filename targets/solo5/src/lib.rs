//! # lamina-solo5: the bare-metal runtime of the spt and hvt targets
//!
//! A Lamina unikernel is one `#![no_std]` ELF image: the application, the
//! libraries it uses and this runtime, which speaks the Solo5 ABI to a tender
//! (`lamina-spt`, `lamina-hvt`, or Solo5's own `solo5-spt`/`solo5-hvt`).
//!
//! | module | what |
//! |--------|------|
//! | `sys::hvt`, `sys::spt` | the only code that differs between the two ABIs: hypercalls (`outl`) or system calls |
//! | `boot`    | entry from the tender, the boot info, the heap, the command line |
//! | `devices` | console, clock, random, block and network over `sys` |
//! | `park`    | the executor's idle wait: Solo5's `yield(deadline)` |
//! | `mem`     | `memcpy` and friends, which `core` expects from a libc |
//! | [`app`]   | command line to arguments, logger, `main` to its status (shared with virtio) |
//! | [`time`]  | TSC to nanoseconds |
//! | [`entropy`] | the CSPRNG's seed from RDSEED or RDRAND |
//!
//! The image is sealed: the linker script (`link.ld`) puts text, read-only
//! data and writable data in separate segments (R+X, R, RW), the tender maps
//! them so, and nothing is ever made executable at run time.
//!
//! Everything but [`app`], [`time`], [`entropy`] and [`cmdline`] is compiled only for a guest
//! (`--cfg lamina_target="spt"` or `"hvt"`, set by `lamina build`); on the
//! host the crate is just those, so that they can be unit-tested.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod app;
pub mod cmdline;
pub mod entropy;
pub mod time;

#[cfg(any(lamina_target = "spt", lamina_target = "hvt"))]
mod guest;
#[cfg(any(lamina_target = "spt", lamina_target = "hvt"))]
pub use guest::*;
