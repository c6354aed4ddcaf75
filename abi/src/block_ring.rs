//! The block ring: block requests through shared memory on hvt, an
//! extension negotiated through [`crate::hvt::HOST_FEATURE_BLOCK_RING`]
//! (offered only to an image whose LMN1 note asks for
//! [`BLOCK_IO`](crate::note::features::BLOCK_IO); Solo5's tenders never
//! offer it, and their guests use the `BlockRead`/`BlockWrite` hypercalls).
//!
//! Why: each block hypercall is a VM exit, 50-70 µs on nested KVM-PVM,
//! ten times what a page-cached 4 KiB `pread(2)` costs. With the ring the
//! guest queues requests in shared memory; the tender's block I/O thread
//! serves them with `pread`/`pwrite`/`fdatasync` on the backing file and
//! posts completions, which the guest takes with plain loads. The guest
//! kicks (one `outl` to [`KICK_PORT`], an ioeventfd served inside the host
//! kernel, never an exit to the tender) only while that thread sleeps.
//!
//! The ring lies at [`crate::hvt::BootInfo::block_ring`], above the
//! guest's `mem_size` (so outside its heap and stack), and takes
//! [`RESERVED_BYTES`]. Its layout (offsets from its start, in
//! [`offsets`]):
//!
//! | bytes | who writes | what |
//! |-------|------------|------|
//! | 0..8 | guest | `sub_tail`, `com_head` |
//! | 64..76 | tender | `sub_head`, `com_tail`, `needs_kick` |
//! | 128.. | guest | [`SIZE`] [`Request`]s of 32 bytes |
//! | [`offsets::COMPLETIONS`].. | tender | [`SIZE`] [`Completion`]s of 16 bytes |
//!
//! Protocol (one producer and one consumer per direction; indices are
//! free-running `u32`, slot = index & [`MASK`]):
//! - Guest submits: only while `sub_tail - com_head < SIZE` (every request
//!   gets exactly one completion, so there is room for it); fill
//!   `requests[sub_tail & MASK]` (its `id` is the guest's, echoed), store
//!   barrier, `sub_tail += 1`, full barrier; if `needs_kick` is set, clear
//!   it and kick.
//! - Tender serves requests from `sub_head` in order, each to its end
//!   (so a [`op::FLUSH`] covers every write submitted before it), writes
//!   a [`Completion`] at `completions[com_tail & MASK]`, then
//!   `com_tail += 1`, then `sub_head += 1`.
//! - Guest takes completions from `com_head` (in any order of its own
//!   waiters: the `id` says whose).
//! - Tender sleeps: set `needs_kick = 1`, full barrier, re-check
//!   `sub_tail`, block on the kick. A guest waiting for a completion
//!   therefore never waits on a sleeping tender: its request was either
//!   seen before the sleep or kicked.
//!
//! A request is checked in full: a known device, a known operation, a
//! length that is a non-zero whole number of sectors of at most
//! [`crate::mft::block_features::MAX_TRANSFER`] bytes, on the device, and
//! a buffer inside the guest's memory (below the ring). Any other is
//! answered [`crate::Solo5Result::Einval`] and touches neither the file
//! nor guest memory; a host failure is
//! [`crate::Solo5Result::Eunspec`]. Only impossible indices (more than
//! [`SIZE`] requests outstanding, or completions not taken) stop the
//! guest, as a corrupt virtqueue would.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Requests in the ring (a power of two).
pub const SIZE: u32 = 128;
/// Index mask.
pub const MASK: u32 = SIZE - 1;
/// I/O port of the kick (an ioeventfd on the host; the network ring's is
/// [`crate::ring::KICK_PORT`]).
pub const KICK_PORT: u16 = 0x601;
/// Guest memory the tender reserves for the ring (64 KiB aligned, below
/// the network ring's area when there is one).
pub const RESERVED_BYTES: u64 = 64 << 10;

/// Offsets in the ring.
pub mod offsets {
    /// Guest: the next request slot it will fill.
    pub const SUB_TAIL: usize = 0;
    /// Guest: the next completion it will take.
    pub const COM_HEAD: usize = 4;
    /// Tender: the next request it will serve.
    pub const SUB_HEAD: usize = 64;
    /// Tender: the next completion slot it will fill.
    pub const COM_TAIL: usize = 68;
    /// Tender: 1 while its block I/O thread sleeps.
    pub const NEEDS_KICK: usize = 72;
    /// The requests array.
    pub const REQUESTS: usize = 128;
    /// The completions array.
    pub const COMPLETIONS: usize = REQUESTS + super::SIZE as usize * super::REQUEST_BYTES;
}

/// Bytes of one [`Request`].
pub const REQUEST_BYTES: usize = 32;
/// Bytes of one [`Completion`].
pub const COMPLETION_BYTES: usize = 16;
/// Bytes of the ring structure.
pub const RING_BYTES: usize = offsets::COMPLETIONS + SIZE as usize * COMPLETION_BYTES;

const _: () = assert!(RING_BYTES as u64 <= RESERVED_BYTES);
const _: () = assert!(size_of::<Request>() == REQUEST_BYTES);
const _: () = assert!(size_of::<Completion>() == COMPLETION_BYTES);

/// Operations.
pub mod op {
    /// Read `len` bytes at `sector` into `data`.
    pub const READ: u32 = 1;
    /// Write `len` bytes from `data` at `sector`.
    pub const WRITE: u32 = 2;
    /// Make every write served before it durable (`fdatasync(2)` of the
    /// backing file); `sector`, `data` and `len` must be 0.
    pub const FLUSH: u32 = 3;
}

/// A request from the guest.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Request {
    /// An [`op`].
    pub operation: u32,
    /// Device handle (its manifest index).
    pub handle: u32,
    /// First sector.
    pub sector: u64,
    /// Guest address of the buffer.
    pub data: u64,
    /// Bytes: a whole number of sectors.
    pub len: u32,
    /// The guest's tag, echoed in the completion.
    pub id: u32,
}

/// The tender's answer to a request.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Completion {
    /// The request's `id`.
    pub id: u32,
    /// A [`crate::Solo5Result`].
    pub status: i32,
    /// Reserved, zero.
    pub _reserved: u64,
}

/// Guest address of request slot `index` of the ring at `ring`.
pub const fn request_at(ring: u64, index: u32) -> u64 {
    ring + (offsets::REQUESTS + (index & MASK) as usize * REQUEST_BYTES) as u64
}

/// Guest address of completion slot `index` of the ring at `ring`.
pub const fn completion_at(ring: u64, index: u32) -> u64 {
    ring + (offsets::COMPLETIONS + (index & MASK) as usize * COMPLETION_BYTES) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(core::mem::offset_of!(Request, sector), 8);
        assert_eq!(core::mem::offset_of!(Request, data), 16);
        assert_eq!(core::mem::offset_of!(Request, len), 24);
        assert_eq!(core::mem::offset_of!(Request, id), 28);
        assert_eq!(offsets::COMPLETIONS, 128 + 128 * 32);
        assert_eq!(RING_BYTES, 6272);
        assert_eq!(request_at(0x1000, SIZE + 1), 0x1000 + 160);
        assert_eq!(completion_at(0, 2), offsets::COMPLETIONS as u64 + 32);
    }
}
