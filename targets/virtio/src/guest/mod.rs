//! Everything that exists only inside a unikernel.

mod boot;
mod devices;
mod hw;
mod irq;
mod park;
mod virtio;

pub use boot::{start, Boot, VirtioMachine};
pub use devices::{GuestPlatform, VirtioClock, VirtioConsole, VirtioRandom};
