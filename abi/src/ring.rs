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
//! - A write entry's frame is the `len` bytes at guest address `data`, in
//!   memory of the guest's that it leaves alone until `ent_head` has
//!   passed the entry. Frames of an ordinary link fit [`BUF_SIZE`]; a
//!   guest on a link with the virtio-net header (which only Lamina's tender
//!   offers) sends large segments, up to 64 KiB and the header, the same
//!   way.
//!
//! Receiving, with [`crate::hvt::HOST_FEATURE_RX_QUEUES`], needs no request
//! and no exit: see [`rx`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Entries in the ring (a power of two).
pub const SIZE: u32 = 1024;
/// Index mask.
pub const MASK: u32 = SIZE - 1;
/// Largest frame of a link without the virtio-net header (an MTU of
/// 1500 and more): what a ring slot of Solo5's layout carries.
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
    /// Guest: non-zero once it takes frames from the receive queues
    /// ([`super::rx`]); until then the tender receives only when asked.
    pub const RX_ENABLE: usize = 8;
    /// Guest: 1 while it waits in POLL for a receive queue; the tender
    /// clears it and signals the POLL when it queues a frame.
    pub const GUEST_WAITING: usize = 12;
    /// The entries array.
    pub const ENTRIES: usize = 128;
    /// The commits array.
    pub const COMMITS: usize = 32_896;
    /// Tender: writes the host refused so far, per device: a `u32` for
    /// each handle below [`super::MAX_HANDLES`] (free-running; a Lamina
    /// extension after Solo5's layout, inside [`super::RESERVED_BYTES`]).
    pub const WRITE_ERRORS_BY_HANDLE: usize = super::RING_BYTES;
    /// Guest: a [`super::GuestStats`], what its idle waits cost it (a
    /// Lamina extension inside [`super::RESERVED_BYTES`], on a cache line
    /// of its own).
    pub const GUEST_STATS: usize = WRITE_ERRORS_BY_HANDLE + 4 * super::MAX_HANDLES;
}

/// What a Lamina guest's idle waits cost it, which it keeps in the ring at
/// [`offsets::GUEST_STATS`] (with relaxed stores, once per wait) and the
/// tender prints after the guest stopped (`lamina-hvt --x-stats`): with
/// the tender's own time outside KVM_RUN it splits the vCPU's time into
/// the guest's work, its polling, and the world switches of its sleeps.
/// Nothing reads it while the guest runs; a guest that does not know it
/// leaves it zero.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GuestStats {
    /// Nanoseconds the guest polled its receive queues before sleeping.
    pub poll_ns: u64,
    /// Polls.
    pub polls: u64,
    /// Polls that found input (and so spared a sleep).
    pub polls_caught: u64,
    /// Nanoseconds in POLL hypercalls, as the guest's clock saw them: the
    /// exit, the tender's wait and the return.
    pub sleep_ns: u64,
    /// POLL hypercalls.
    pub sleeps: u64,
}

/// Receive queues: one per network device, in the ring's reserved area.
///
/// Why: a synchronous read (an entry, then spinning for its commit) makes
/// the guest wait for the tender's thread, and the POLL hypercall that
/// learns of input is an exit. With these queues the tender's I/O thread
/// reads each tap as soon as it is readable into a byte ring the guest
/// drains with plain loads; the guest learns of input by looking, and
/// exits only to sleep.
///
/// Layout: [`TABLE`] holds [`MAX_QUEUES`] [`Queue`] descriptors (the
/// tender fills them before boot; `size == 0` ends the list). Each queue
/// is a byte ring of `size` bytes (a power of two) at ring offset
/// `offset`, with free-running byte indices `tail` (tender) and `head`
/// (guest), in the descriptor's two cache lines. A record is a
/// [`Record`] header followed by the frame, starting at a multiple of
/// [`ALIGN`]; a header whose `len` is [`WRAP`] means "continue at
/// offset 0". The tender writes a frame only where it fits contiguously,
/// then stores `tail` (Release); the guest copies it out, then stores
/// `head` (Release).
///
/// A full queue: the tender stops reading that tap and sets `stalled`;
/// after freeing room the guest kicks if `stalled` and `needs_kick` (a
/// full fence between its `head` store and those loads, as the tender
/// has between its `stalled`/`needs_kick` stores and its `head` load).
pub mod rx {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// Ring offset of the descriptor table.
    pub const TABLE: usize = 53_248;
    /// Bytes of one descriptor (two cache lines).
    pub const DESCRIPTOR_BYTES: usize = 128;
    /// Queues at most (network devices beyond use the entries).
    pub const MAX_QUEUES: usize = 8;
    /// Ring offset of the queues' bytes.
    pub const DATA: usize = 64 << 10;
    /// Record alignment.
    pub const ALIGN: u32 = 16;
    /// `Record::len` of a wrap marker.
    pub const WRAP: u32 = u32::MAX;

    /// Offsets inside a descriptor.
    pub mod field {
        /// Tender: the device handle.
        pub const HANDLE: usize = 0;
        /// Tender: ring offset of the queue's bytes.
        pub const OFFSET: usize = 4;
        /// Tender: bytes in the queue (a power of two; 0: no queue).
        pub const SIZE: usize = 8;
        /// Tender: free-running byte index after the last record.
        pub const TAIL: usize = 12;
        /// Tender: 1 while it has stopped reading the tap because the
        /// queue was full.
        pub const STALLED: usize = 16;
        /// Guest: free-running byte index of the next record to take.
        pub const HEAD: usize = 64;
    }

    /// The header of a record.
    #[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct Record {
        /// Frame bytes after this header, or [`WRAP`].
        pub len: u32,
        /// Reserved.
        pub _reserved: u32,
    }

    /// Bytes a record of a `len`-byte frame takes, modulo 2^32 as the
    /// queues' indices count: a reader that finds a length near `u32::MAX`
    /// (a queue the guest scribbled over) moves its head by the wrapped
    /// amount rather than overflowing (found by the hvt_rx fuzz target, in
    /// its model of the guest's `take`, which is the guest's code).
    pub const fn record_bytes(len: u32) -> u32 {
        (size_of::<Record>() as u32)
            .wrapping_add(len)
            .wrapping_add(ALIGN - 1)
            & !(ALIGN - 1)
    }

    /// The size of each of `queues` queues in `area` bytes: the largest
    /// power of two that fits, or `None` when that is under `min`.
    pub fn queue_size(area: usize, queues: usize, min: usize) -> Option<u32> {
        let each = area.checked_div(queues)?;
        if each < min {
            return None;
        }
        let size = 1usize << each.ilog2();
        u32::try_from(size).ok()
    }
}

// The receive queues' table and bytes come after everything else, inside
// the reserved area.
const _: () = assert!(offsets::GUEST_STATS.is_multiple_of(64));
const _: () = assert!(offsets::GUEST_STATS + core::mem::size_of::<GuestStats>() <= rx::TABLE);
const _: () = assert!(rx::TABLE + rx::MAX_QUEUES * rx::DESCRIPTOR_BYTES <= rx::DATA);
const _: () = assert!((rx::DATA as u64) < RESERVED_BYTES);
// `rx::record_bytes` rounds up with a mask.
const _: () = assert!(rx::ALIGN.is_power_of_two());

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

/// Where a guest puts the frames it sends through the ring: a byte ring of
/// its own memory, each frame whole at a position that only grows (taken
/// modulo the capacity), wrapping to the start rather than splitting a
/// frame. A frame's bytes stay the tender's until `ent_head` passes its
/// entry, so the guest records where each entry's frame starts and a new
/// frame may only reach `capacity` bytes past the start of the oldest
/// frame the tender has not finished.
///
/// The arithmetic only; the guest keeps the positions (Lamina's guest:
/// `targets/solo5/src/guest/sys/hvt.rs`).
///
/// ```
/// use lamina_abi::ring::ByteRing;
/// let ring = ByteRing::new(4096);
/// // 1000 bytes at position 3500 would cross the end: they start over.
/// assert_eq!(ring.place(3500, 1000), Some((4096, 5096)));
/// assert_eq!(ring.offset(4096), 0);
/// // While a frame from 999 on is in flight, 5096 is a byte too far.
/// assert!(!ring.free_up_to(999, 5096));
/// assert!(ring.free_up_to(1000, 5096));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRing {
    capacity: u64,
}

impl ByteRing {
    /// A ring of `capacity` bytes (not zero).
    pub const fn new(capacity: u64) -> Self {
        assert!(capacity > 0);
        ByteRing { capacity }
    }

    /// Where a frame of `len` bytes goes when the next free position is
    /// `pos`: `(start, end)` positions, the frame whole before the ring's
    /// end (at the next multiple of the capacity if it would cross it);
    /// `None` if it is larger than the ring or the positions would
    /// overflow.
    pub const fn place(&self, pos: u64, len: u64) -> Option<(u64, u64)> {
        if len > self.capacity {
            return None;
        }
        let offset = pos % self.capacity;
        let start = if offset + len > self.capacity {
            match pos.checked_add(self.capacity - offset) {
                Some(start) => start,
                None => return None,
            }
        } else {
            pos
        };
        match start.checked_add(len) {
            Some(end) => Some((start, end)),
            None => None,
        }
    }

    /// Whether the bytes up to position `end` are free while the oldest
    /// frame in flight starts at `in_use` (at most `end`).
    pub const fn free_up_to(&self, in_use: u64, end: u64) -> bool {
        end.saturating_sub(in_use) <= self.capacity
    }

    /// The offset in the ring's memory of position `pos`.
    pub const fn offset(&self, pos: u64) -> u64 {
        pos % self.capacity
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    /// A guest sending frames of pseudo-random sizes while a tender takes
    /// them late, in bursts: every frame lies whole inside the ring and
    /// never on bytes of a frame still in flight.
    #[test]
    fn frames_in_flight_never_overlap() {
        const CAPACITY: u64 = 8192;
        let ring = ByteRing::new(CAPACITY);
        let mut owner = vec![None::<u64>; CAPACITY as usize];
        let mut in_flight = std::collections::VecDeque::new(); // (id, start, end)
        let mut pos = u64::MAX - (64 << 20); // near the top of the positions
        pos -= pos % CAPACITY;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut sent = 0;
        for id in 0..20_000u64 {
            let len = 1 + next() % (CAPACITY / 3);
            let Some((start, end)) = ring.place(pos, len) else {
                break; // the positions ran out: the test went far enough
            };
            assert!(ring.offset(start) + len <= CAPACITY, "frame {id} split");
            // The tender takes the oldest frames until there is room.
            while let Some(&(_, oldest, _)) = in_flight.front() {
                if ring.free_up_to(oldest, end) {
                    break;
                }
                let (gone, start, end) = in_flight.pop_front().unwrap();
                for p in start..end {
                    assert_eq!(owner[ring.offset(p) as usize], Some(gone));
                    owner[ring.offset(p) as usize] = None;
                }
            }
            for p in start..end {
                let byte = &mut owner[ring.offset(p) as usize];
                assert_eq!(*byte, None, "frame {id} over a frame in flight");
                *byte = Some(id);
            }
            in_flight.push_back((id, start, end));
            pos = end;
            sent += 1;
            // Sometimes the tender catches up on its own.
            if next() % 7 == 0 {
                for (gone, start, end) in in_flight.drain(..) {
                    for p in start..end {
                        assert_eq!(owner[ring.offset(p) as usize], Some(gone));
                        owner[ring.offset(p) as usize] = None;
                    }
                }
            }
        }
        assert!(sent > 1000, "only {sent} frames placed");
    }

    #[test]
    fn placement_edges() {
        let ring = ByteRing::new(1024);
        assert_eq!(ring.place(0, 1024), Some((0, 1024)));
        assert_eq!(ring.place(1, 1024), Some((1024, 2048)));
        assert_eq!(ring.place(1000, 24), Some((1000, 1024)));
        assert_eq!(ring.place(1000, 25), Some((1024, 1049)));
        assert_eq!(ring.place(5, 0), Some((5, 5)));
        assert_eq!(ring.place(0, 1025), None);
        assert_eq!(ring.place(u64::MAX - 10, 100), None);
        assert!(ring.free_up_to(0, 1024));
        assert!(!ring.free_up_to(0, 1025));
        assert!(ring.free_up_to(2000, 1000), "no frame in flight behind");
    }

    #[test]
    fn layout_matches_solo5() {
        assert_eq!(core::mem::size_of::<RingEntry>(), 32);
        assert_eq!(core::mem::size_of::<Commit>(), 16);
        assert_eq!(offsets::ENTRIES + SIZE as usize * 32, offsets::COMMITS);
        assert_eq!(offsets::COMMITS + SIZE as usize * 16, RING_BYTES);
    }

    #[test]
    fn queue_sizes_are_powers_of_two_that_fit() {
        let area = RESERVED_BYTES as usize - rx::DATA;
        assert_eq!(rx::queue_size(area, 1, 4096), Some(1 << 20));
        assert_eq!(rx::queue_size(area, 2, 4096), Some(512 << 10));
        assert_eq!(rx::queue_size(area, 3, 4096), Some(512 << 10));
        assert_eq!(rx::queue_size(area, 0, 4096), None);
        assert_eq!(rx::queue_size(1000, 1, 4096), None);
        assert_eq!(rx::record_bytes(0), 16);
        assert_eq!(rx::record_bytes(1514), 1536);
        assert_eq!(rx::record_bytes(u32::MAX - 23), u32::MAX - 15);
        assert_eq!(rx::record_bytes(u32::MAX - 8), 0);
        assert_eq!(rx::record_bytes(u32::MAX), 16);
    }
}
