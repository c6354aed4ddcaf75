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
//!
//! In front of the list sit free lists of small blocks, one per 16-byte size
//! class up to [`SMALL_MAX`]: a freed small block is kept there and handed
//! out again in O(1). The list alone walks its holes on every allocation and
//! every free (first fit, address-ordered), and with tens of connections
//! alive those walks were a fifth of a keep-alive HTTPS request's CPU on spt
//! (perf: 21% in allocate and dealloc). What the free lists keep is bounded
//! ([`CACHE_MAX_BYTES`]) and goes back to the list whenever the list cannot
//! satisfy an allocation, so no allocation fails that would have succeeded
//! without them.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// Smallest heap worth booting with.
pub const MIN_SIZE: u64 = 256 * 1024;

/// Bytes past an allocation that the list may write: the rounding of the
/// size to its 16-byte minimum and 8-byte granule (< 16), then the header
/// of the free hole that follows (16). Kept generous.
const HOLE_SLACK: usize = 64;

/// Largest allocation served by the free lists of size classes.
pub const SMALL_MAX: usize = 2048;
/// Size-class step, and the largest alignment the classes serve.
const CLASS_STEP: usize = 16;
/// Number of size classes: 16, 32, .. [`SMALL_MAX`] bytes.
const CLASSES: usize = SMALL_MAX / CLASS_STEP;
/// Most bytes the free lists keep; past it a freed block goes back to the
/// list. Enough for every connection of a busy server to be between two
/// requests at once (50 keep-alive TLS connections free about 3 KiB each),
/// which at 64 KiB overflowed and sent the next allocations back to walking
/// the list. Memory in the lists was used before (it is resident anyway)
/// and goes back to the list before any allocation would fail.
pub const CACHE_MAX_BYTES: usize = 256 * 1024;

struct State {
    heap: linked_list_allocator::Heap,
    /// Every byte from here to the heap's end is zero and never used.
    dirty_end: usize,
    /// Freed small blocks by size class.
    small: FreeLists,
}

/// Singly linked lists of free blocks, one per size class: each block's
/// first word holds the address of the next (0 ends a list).
struct FreeLists {
    heads: [usize; CLASSES],
    /// Bytes in all the lists.
    cached_bytes: usize,
}

impl FreeLists {
    const fn new() -> Self {
        FreeLists {
            heads: [0; CLASSES],
            cached_bytes: 0,
        }
    }

    /// The size class of `layout` and the layout its blocks have in the
    /// list, if it is small.
    fn class_of(layout: Layout) -> Option<(usize, Layout)> {
        if layout.size() > SMALL_MAX || layout.align() > CLASS_STEP {
            return None;
        }
        let class = layout.size().max(1).div_ceil(CLASS_STEP) - 1;
        let block = Layout::from_size_align((class + 1) * CLASS_STEP, CLASS_STEP).ok()?;
        Some((class, block))
    }

    /// A block of `class`, if one is free.
    fn pop(&mut self, class: usize, block: Layout) -> Option<NonNull<u8>> {
        let head = NonNull::new(self.heads[class] as *mut u8)?;
        // SAFETY: blocks in the lists are ours (push), at least 16 bytes,
        // 16-aligned, and their first word is the link written by push.
        self.heads[class] = unsafe { head.as_ptr().cast::<usize>().read() };
        self.cached_bytes -= block.size();
        Some(head)
    }

    /// Keeps `ptr` (a block of `class`, no longer used) unless the lists are
    /// full; false then, and the caller frees it.
    fn push(&mut self, class: usize, block: Layout, ptr: NonNull<u8>) -> bool {
        if self.cached_bytes + block.size() > CACHE_MAX_BYTES {
            return false;
        }
        // SAFETY: the block was allocated with `block` (16-aligned, at least
        // 16 bytes) and its owner gave it up: its first word is ours.
        unsafe { ptr.as_ptr().cast::<usize>().write(self.heads[class]) };
        self.heads[class] = ptr.as_ptr() as usize;
        self.cached_bytes += block.size();
        true
    }
}

/// The allocator: the list and its high-water mark under one lock.
pub struct Heap(spin::Mutex<State>);

/// The global allocator of a guest; on the host (unit tests) an unused heap.
#[cfg_attr(lamina_guest, global_allocator)]
static HEAP: Heap = Heap(spin::Mutex::new(State {
    heap: linked_list_allocator::Heap::empty(),
    dirty_end: usize::MAX,
    small: FreeLists::new(),
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
        let class = FreeLists::class_of(layout);
        if let Some((class, block)) = class {
            if let Some(ptr) = self.small.pop(class, block) {
                // A used block: all of it below the mark.
                return Some((ptr, layout.size()));
            }
        }
        let list_layout = class.map_or(layout, |(_, block)| block);
        let ptr = match self.heap.allocate_first_fit(list_layout) {
            Ok(ptr) => ptr,
            Err(()) => {
                // The free lists may hold what the list lacks.
                self.release_small();
                self.heap.allocate_first_fit(list_layout).ok()?
            }
        };
        let start = ptr.as_ptr() as usize;
        let used = self.dirty_end.saturating_sub(start).min(layout.size());
        let reach = start
            .saturating_add(list_layout.size())
            .saturating_add(HOLE_SLACK);
        self.dirty_end = self.dirty_end.max(reach);
        Some((ptr, used))
    }

    /// Frees `ptr`, allocated with `layout`.
    ///
    /// # Safety
    /// `ptr` came from [`State::allocate`] with `layout` and is freed once.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let list_layout = match FreeLists::class_of(layout) {
            Some((class, block)) if self.small.push(class, block, ptr) => return,
            Some((_, block)) => block,
            None => layout,
        };
        // SAFETY: the caller's contract; small blocks were taken from the
        // list with their class's layout.
        unsafe { self.heap.deallocate(ptr, list_layout) };
    }

    /// Gives every block of the free lists back to the list.
    fn release_small(&mut self) {
        for class in 0..CLASSES {
            let block = Layout::from_size_align((class + 1) * CLASS_STEP, CLASS_STEP)
                .expect("class sizes are valid layouts");
            while let Some(ptr) = self.small.pop(class, block) {
                // SAFETY: the block came from the list with this layout and
                // nothing uses it (it was in a free list).
                unsafe { self.heap.deallocate(ptr, block) };
            }
        }
    }
}

// SAFETY: allocations come from linked_list_allocator's list under the
// lock, as LockedHeap does, or are small blocks freed earlier and kept in
// the free lists (never handed out twice: pop unlinks them); alloc_zeroed
// zeroes every byte of an allocation that is not above the mark, and the
// bytes above it are zero (the invariant `init`'s caller establishes and
// `allocate` keeps).
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
            unsafe { self.0.lock().deallocate(ptr, layout) };
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
            small: FreeLists::new(),
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

    #[test]
    fn freed_small_blocks_are_reused_and_bounded() {
        let mut buffer = vec![0u64; 1024 * 1024];
        let heap = heap_over(&mut buffer);
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: non-zero layouts; pointers checked, freed once with their layout.
        unsafe {
            let a = heap.alloc(layout);
            assert!(!a.is_null());
            heap.dealloc(a, layout);
            // Any size of the same class (97..=112 bytes) gets the block back.
            let b = heap.alloc(Layout::from_size_align(112, 16).unwrap());
            assert_eq!(a, b, "a freed block of the class is handed out again");
            heap.dealloc(b, Layout::from_size_align(112, 16).unwrap());
            // Larger alignments and sizes bypass the classes.
            let big = Layout::from_size_align(SMALL_MAX + 1, 8).unwrap();
            let c = heap.alloc(big);
            assert!(!c.is_null());
            heap.dealloc(c, big);
            // Freeing more than the bound keeps at most the bound.
            let small = Layout::from_size_align(1024, 8).unwrap();
            let blocks: Vec<_> = (0..2 * CACHE_MAX_BYTES / 1024)
                .map(|_| heap.alloc(small))
                .collect();
            assert!(blocks.iter().all(|p| !p.is_null()));
            for p in blocks {
                heap.dealloc(p, small);
            }
            assert!(heap.0.lock().small.cached_bytes <= CACHE_MAX_BYTES);
        }
    }

    #[test]
    fn blocks_in_the_free_lists_go_back_when_the_list_runs_short() {
        // 256 KiB, filled with small blocks, all freed into the free lists
        // (as far as they take them): a large allocation still fits.
        let mut buffer = vec![0u64; 32 * 1024];
        let heap = heap_over(&mut buffer);
        let small = Layout::from_size_align(512, 8).unwrap();
        // SAFETY: non-zero layouts; pointers checked, freed once with their layout.
        unsafe {
            let mut blocks = Vec::new();
            loop {
                let p = heap.alloc(small);
                if p.is_null() {
                    break;
                }
                blocks.push(p);
            }
            assert!(blocks.len() > 400);
            for p in blocks {
                heap.dealloc(p, small);
            }
            assert!(heap.0.lock().small.cached_bytes > 0);
            let large = Layout::from_size_align(200 * 1024, 8).unwrap();
            let p = heap.alloc_zeroed(large);
            assert!(!p.is_null(), "the free lists gave their blocks back");
            let bytes = core::slice::from_raw_parts(p, large.size());
            assert!(bytes.iter().all(|&b| b == 0));
            heap.dealloc(p, large);
        }
    }
}
