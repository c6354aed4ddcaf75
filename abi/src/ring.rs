//! The batched network ring: an extension negotiated through
//! [`crate::hvt::HOST_FEATURE_RING_IO`], layout-compatible with Solo5's
//! `hvt_ring` so that either side may be Solo5's.
//!
//! Why: a VM exit costs 50-70 µs on nested KVM-PVM. With the ring the guest
//! queues frames in shared memory and kicks (one `outl` to
//! [`KICK_PORT`], served in the kernel through an ioeventfd, not by the
//! tender's vCPU thread) only when the tender's I/O thread has gone to
//! sleep (`needs_kick`). Under load the tender polls and the guest never
//! exits for I/O.
//!
//! Protocol (single producer, single consumer per direction; indices are
//! free-running `u32`, slot = index & [`MASK`]):
//! - Guest submits: fill `entries[ent_tail & MASK]`, store barrier,
//!   `ent_tail += 1`, full barrier; if `needs_kick` then kick.
//! - Tender consumes entries from `ent_head`; a write is done and forgotten,
//!   except that a write the host refused (the tap failed it, or no link
//!   carries a frame that large) adds one to `write_errors` and to that
//!   device's `write_errors_by_handle[handle]`, which the guest reports as
//!   SOLO5_R_EUNSPEC from its next write on that device (the hypercall
//!   answers the same failure so at once); a read posts a [`Commit`] at
//!   `commits[com_tail & MASK]`, then `com_tail += 1`; then `ent_head += 1`.
//! - Guest takes commits from `com_head`.
//! - Tender sleeps: set `needs_kick = 1`, full barrier, re-check `ent_tail`,
//!   block on the eventfd.
//! - Frames larger than [`BUF_SIZE`] go through the `NetWrite` hypercall.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Entries in the ring (a power of two).
pub const SIZE: u32 = 1024;
/// Index mask.
pub const MASK: u32 = SIZE - 1;
/// Largest frame a ring slot carries.
pub const BUF_SIZE: u32 = 2048;
/// I/O port of the kick (an ioeventfd on the host).
pub const KICK_PORT: u16 = 0x600;
/// Bytes of the ring structure.
pub const RING_BYTES: usize = 49_280;
/// Guest memory the tender reserves for the ring at the top of RAM.
pub const RESERVED_BYTES: u64 = 2 << 20;

/// Offsets of the index words in the ring (guest-written, then
/// tender-written cache lines).
pub mod offsets {
    /// Guest: next entry slot it will fill.
    pub const ENT_TAIL: usize = 0;
    /// Guest: next commit it will take.
    pub const COM_HEAD: usize = 4;
    /// Tender: next entry it will process.
    pub const ENT_HEAD: usize = 64;
    /// Tender: next commit slot it will fill.
    pub const COM_TAIL: usize = 68;
    /// Tender: 1 while its I/O thread sleeps.
    pub const NEEDS_KICK: usize = 72;
    /// Tender: writes the host refused so far (free-running; a Lamina
    /// extension in what Solo5's layout leaves unused, so a guest that
    /// does not know it is not affected).
    pub const WRITE_ERRORS: usize = 76;
    /// The entries array.
    pub const ENTRIES: usize = 128;
    /// The commits array.
    pub const COMMITS: usize = 32_896;
    /// Tender: writes the host refused so far, per device: a `u32` for
    /// each handle below [`super::MAX_HANDLES`] (free-running; a Lamina
    /// extension after Solo5's layout, inside [`super::RESERVED_BYTES`]).
    pub const WRITE_ERRORS_BY_HANDLE: usize = super::RING_BYTES;
}

/// Device handles that have a word in `write_errors_by_handle` (all of
/// them: a Solo5 handle is a bit of the 64-bit ready set).
pub const MAX_HANDLES: usize = 64;

/// Operations.
pub mod op {
    /// Send the frame at `data`.
    pub const NET_WRITE: u32 = 1;
    /// Receive a frame into `data`, answered by a commit.
    pub const NET_READ: u32 = 2;
}

/// A request from the guest.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RingEntry {
    /// An [`op`].
    pub operation: u32,
    /// Device handle.
    pub handle: u32,
    /// Guest address of the frame or buffer.
    pub data: u64,
    /// Frame length, or buffer size.
    pub len: u32,
    /// Guest's tag, echoed in the commit.
    pub id: u32,
    /// Reserved.
    pub _reserved: u64,
}

/// The tender's answer to a read.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Commit {
    /// The entry's `id`.
    pub id: u32,
    /// A [`crate::Solo5Result`].
    pub ret: i32,
    /// Bytes received.
    pub len: u32,
    /// Reserved.
    pub _reserved: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_solo5() {
        assert_eq!(core::mem::size_of::<RingEntry>(), 32);
        assert_eq!(core::mem::size_of::<Commit>(), 16);
        assert_eq!(offsets::ENTRIES + SIZE as usize * 32, offsets::COMMITS);
        assert_eq!(offsets::COMMITS + SIZE as usize * 16, RING_BYTES);
    }
}
