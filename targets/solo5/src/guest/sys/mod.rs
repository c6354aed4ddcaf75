//! The two ABIs behind one set of functions; exactly one is compiled in.

#[cfg(feature = "hvt")]
mod hvt;
#[cfg(feature = "hvt")]
pub use hvt::*;
#[cfg(feature = "hvt")]
pub mod block_ring;
#[cfg(feature = "hvt")]
mod rx;

#[cfg(feature = "spt")]
mod spt;
#[cfg(feature = "spt")]
pub use spt::*;

/// What the runtime needs from the boot info, whichever ABI gave it.
#[derive(Debug, Clone, Copy)]
pub struct BootFacts {
    /// Bytes of guest memory from address 0.
    pub mem_size: u64,
    /// End of the loaded image, page aligned.
    pub kernel_end: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline: usize,
    /// Address of the attached manifest.
    pub mft: usize,
    /// Whether the clock source is usable (hvt: a plausible TSC frequency).
    pub tsc_valid: bool,
}

/// A device as the ABI calls it: its manifest index (hvt) and host
/// descriptor (spt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceHandle {
    /// Index in the manifest; bit `index` in yield's ready set.
    pub index: u64,
    /// Host descriptor from the manifest copy.
    pub fd: i32,
}

/// Frames the guest queued for the tender that it has not taken yet
/// (hvt's ring; on spt frames leave at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    /// The tender's index of the next entry it will take (it moves as the
    /// tender takes them).
    pub head: u32,
    /// Whether the tender's I/O thread sleeps: it takes them only when
    /// kicked, or the vCPU thread does in POLL.
    pub taker_asleep: bool,
}

/// Why an I/O call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// Nothing to do now.
    Again,
    /// The tender or host refused or failed.
    Failed,
}
