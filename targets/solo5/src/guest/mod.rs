//! Everything that exists only inside a unikernel.

mod boot;
mod devices;
mod notes;
mod park;
pub(crate) mod sys;

pub use boot::{start, Boot, Solo5Machine};
pub use devices::{GuestPlatform, SoloBlock, SoloClock, SoloConsole, SoloNetif, SoloRandom};
