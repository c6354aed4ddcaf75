//! # lamina-solo5: the bare-metal runtime of the spt and hvt targets
//!
//! A Lamina unikernel is one `#![no_std]` ELF image: the application, the
//! libraries it uses and this runtime, which speaks the Solo5 ABI to a tender
//! (`lamina-spt`, `lamina-hvt`, or Solo5's own `solo5-spt`/`solo5-hvt`).
//!
//! | module | what |
//! |--------|------|
//! | `sys::hvt`, `sys::spt` | the only code that differs between the two ABIs: hypercalls (`outl`) or system calls |
//! | `boot`    | entry from the tender, the boot info, the heap, the command line, [`Solo5Machine`] |
//! | `devices` | block and network over `sys`; the platform |
//! | `park`    | the executor's idle wait: Solo5's `yield(deadline)` |
//! | [`cmdline`] | Solo5's `--solo5:` options |
//!
//! What every bare-metal runtime shares (heap, `memcpy`, the TSC, the
//! CSPRNG, the logger, the panic handler, the path from command line to
//! exit status) is `lamina-metal`'s.
//!
//! The image is sealed: the linker script (`link.ld`) puts text, read-only
//! data and writable data in separate segments (R+X, R, RW), the tender maps
//! them so, and nothing is ever made executable at run time.
//!
//! Everything but [`cmdline`] is compiled only for a guest (`--cfg
//! lamina_guest`, set by `lamina build` for every unikernel target), for
//! the ABI its feature names: `spt` or `hvt` (the `lamina` crate's feature
//! of the same name turns it on). On the host the crate is just
//! [`cmdline`] and [`look`], so that they can be unit-tested.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod cmdline;
pub mod look;

#[cfg(lamina_guest)]
mod guest;
#[cfg(lamina_guest)]
pub use guest::*;

#[cfg(all(lamina_guest, feature = "spt", feature = "hvt"))]
compile_error!("lamina-solo5 is built for one ABI: its feature `spt` or `hvt`, not both");
#[cfg(all(lamina_guest, not(any(feature = "spt", feature = "hvt"))))]
compile_error!("lamina-solo5 needs its feature `spt` or `hvt` in a guest");
