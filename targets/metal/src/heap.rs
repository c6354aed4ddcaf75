//! The global allocator: a linked-list heap over one region of RAM that the
//! target's boot code finds (above the image, below the stack or inside the
//! identity map).
//!
//! Zeroed allocations skip the zeroing of RAM that was never used when the
//! boot code says the region starts out zero (spt and hvt: the tender's
//! fresh anonymous memory). The heap remembers how far up it has ever
//! handed out or written memory (`dirty_end`); above that mark every byte
//! is still zero, and on the host its page was never touched. A socket's
//! `vec![0u8; 65536]` then costs no resident memory until data arrives:
//! an idle website guest touched 62 all-zero heap pages (248 KiB) at boot
//! before this.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// Smallest heap worth booting with.
pub const MIN_SIZE: u64 = 256 * 1024;

/// Bytes past an allocation that the list may write: the rounding of the
/// size to its 16-byte minimum and 8-byte granule (< 16), then the header
/// of the free hole that follows (16). Kept generous.
const HOLE_SLACK: usize = 64;

struct State {
    heap: linked_list_allocator::Heap,
    /// Every byte from here to the heap's end is zero and never used.
    dirty_end: usize,
}

/// The allocator: the list and its high-water mark under one lock.
pub struct Heap(spin::Mutex<State>);

/// The global allocator of a guest; on the host (unit tests) an unused heap.
#[cfg_attr(
    any(lamina_target = "spt", lamina_target = "hvt", lamina_target = "virtio"),
    global_allocator
)]
static HEAP: Heap = Heap(spin::Mutex::new(State {
    heap: linked_list_allocator::Heap::empty(),
    dirty_end: usize::MAX,
}));

/// Gives the allocator the RAM `[start, end)`; `zeroed` if every byte of
/// it is zero now (fresh memory from the host), which lets zeroed
/// allocations skip it.
///
/// # Safety
/// The region is RAM that nothing else uses, for the rest of the guest's
/// life, and zero if `zeroed`; called once, before any allocation.
pub unsafe fn init(start: u64, end: u64, zeroed: bool) {
    let mut state = HEAP.0.lock();
    // SAFETY: the caller's contract.
    unsafe {
        state
            .heap
            .init(start as *mut u8, end.saturating_sub(start) as usize)
    };
    // The list wrote its first hole's header at the start.
    state.dirty_end = if zeroed {
        (start as usize).saturating_add(HOLE_SLACK)
    } else {
        end as usize
    };
}

/// Bytes the heap was given.
pub fn size() -> usize {
    HEAP.0.lock().heap.size()
}

impl State {
    /// An allocation, and the part of it below the mark (which may hold
    /// old bytes); raises the mark past what the list may have written.
    fn allocate(&mut self, layout: Layout) -> Option<(NonNull<u8>, usize)> {
        let ptr = self.heap.allocate_first_fit(layout).ok()?;
        let start = ptr.as_ptr() as usize;
        let used = self.dirty_end.saturating_sub(start).min(layout.size());
        let reach = start
            .saturating_add(layout.size())
            .saturating_add(HOLE_SLACK);
        self.dirty_end = self.dirty_end.max(reach);
        Some((ptr, used))
    }
}

// SAFETY: allocations come from linked_list_allocator's list under the
// lock, as LockedHeap does; alloc_zeroed zeroes every byte of an
// allocation that is not above the mark, and the bytes above it are zero
// (the invariant `init`'s caller establishes and `allocate` keeps).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate(layout)
            .map_or(core::ptr::null_mut(), |(ptr, _)| ptr.as_ptr())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some((ptr, used)) = self.0.lock().allocate(layout) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the first `used` bytes are inside the allocation just made.
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, used) };
        ptr.as_ptr()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from this heap with
            // `layout`.
            unsafe { self.0.lock().heap.deallocate(ptr, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    /// A heap over a buffer of the test's, zero at first as a guest's is.
    fn heap_over(buffer: &mut [u64]) -> Heap {
        let heap = Heap(spin::Mutex::new(State {
            heap: linked_list_allocator::Heap::empty(),
            dirty_end: usize::MAX,
        }));
        let start = buffer.as_mut_ptr() as usize;
        let mut state = heap.0.lock();
        // SAFETY: the buffer outlives the heap in each test and nothing
        // else uses it.
        unsafe {
            state
                .heap
                .init(buffer.as_mut_ptr().cast(), buffer.len() * 8)
        };
        state.dirty_end = start + HOLE_SLACK;
        drop(state);
        heap
    }

    #[test]
    fn zeroed_allocations_are_zero_after_reuse_and_splits() {
        let mut buffer = vec![0u64; 64 * 1024];
        let heap = heap_over(&mut buffer);
        let mut live = Vec::new();
        // Allocate, dirty, free every other one, then ask for zeroed
        // memory of assorted sizes and alignments: old bytes, hole headers
        // and fresh memory alike must read as zero.
        for round in 0..200usize {
            let layout = Layout::from_size_align(8 + round * 37 % 3000, 8 << (round % 4)).unwrap();
            // SAFETY: a non-zero layout; the pointer is checked.
            let plain = unsafe { heap.alloc(layout) };
            assert!(!plain.is_null());
            // SAFETY: the allocation is `layout.size()` bytes.
            unsafe { core::ptr::write_bytes(plain, 0xa5, layout.size()) };
            live.push((plain, layout));
            if round % 2 == 0 {
                let (ptr, layout) = live.swap_remove(round % live.len());
                // SAFETY: allocated above with this layout, freed once.
                unsafe { heap.dealloc(ptr, layout) };
            }
            let zeroed_layout = Layout::from_size_align(1 + round * 53 % 4000, 8).unwrap();
            // SAFETY: a non-zero layout; the pointer is checked.
            let zeroed = unsafe { heap.alloc_zeroed(zeroed_layout) };
            assert!(!zeroed.is_null());
            // SAFETY: the allocation is `zeroed_layout.size()` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(zeroed, zeroed_layout.size()) };
            assert!(
                bytes.iter().all(|&b| b == 0),
                "round {round}: old bytes in a zeroed allocation"
            );
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(zeroed, 0x5a, zeroed_layout.size()) };
            live.push((zeroed, zeroed_layout));
        }
        for (ptr, layout) in live {
            // SAFETY: each allocated above with its layout, freed once.
            unsafe { heap.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn memory_above_the_mark_is_not_written_by_a_zeroed_allocation() {
        let mut buffer = vec![0u64; 16 * 1024];
        let heap = heap_over(&mut buffer);
        let mark = heap.0.lock().dirty_end;
        // Bytes the heap trusts to be zero: a marker shows whether a zeroed
        // allocation wrote them (on a guest, made them resident).
        let start = buffer.as_ptr() as usize;
        for word in &mut buffer[(mark - start) / 8..] {
            *word = 0xabab_abab_abab_abab;
        }
        let heap_state_end = start + buffer.len() * 8;
        // SAFETY: a non-zero layout; the pointer is checked.
        let ptr = unsafe { heap.alloc_zeroed(Layout::from_size_align(4096, 8).unwrap()) } as usize;
        assert!(ptr != 0 && ptr + 4096 <= heap_state_end);
        // SAFETY: the allocation is 4096 bytes.
        let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, 4096) };
        let below = mark.saturating_sub(ptr).min(4096);
        assert!(bytes[..below].iter().all(|&b| b == 0));
        assert!(
            bytes[below..].iter().all(|&b| b == 0xab),
            "memory above the mark was written"
        );
        let new_mark = heap.0.lock().dirty_end;
        assert!(new_mark >= ptr + 4096 && new_mark <= ptr + 4096 + HOLE_SLACK);
    }
}
