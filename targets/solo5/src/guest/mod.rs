//! Everything that exists only inside a unikernel.

mod boot;
mod devices;
mod mem;
mod notes;
mod park;
pub(crate) mod sys;

pub use boot::{start, Boot};
pub use devices::{GuestPlatform, SoloBlock, SoloClock, SoloConsole, SoloNetif, SoloRandom};
