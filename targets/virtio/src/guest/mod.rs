//! Everything that exists only inside a unikernel.

mod boot;
mod devices;
mod hw;
mod irq;
// `memcpy` and friends: the same file as the Solo5 targets', shared by path
// (it depends on nothing but `core`).
#[path = "../../../solo5/src/guest/mem.rs"]
mod mem;
mod park;
mod virtio;

pub use boot::{start, Boot};
pub use devices::{GuestPlatform, VirtioClock, VirtioConsole, VirtioRandom};
