//! The global allocator: a linked-list heap over one region of RAM that the
//! target's boot code finds (above the image, below the stack or inside the
//! identity map).

/// Smallest heap worth booting with.
pub const MIN_SIZE: u64 = 256 * 1024;

/// The global allocator of a guest; on the host (unit tests) an unused heap.
#[cfg_attr(
    any(lamina_target = "spt", lamina_target = "hvt", lamina_target = "virtio"),
    global_allocator
)]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// Gives the allocator the RAM `[start, end)`.
///
/// # Safety
/// The region is RAM that nothing else uses, for the rest of the guest's
/// life; called once, before any allocation.
pub unsafe fn init(start: u64, end: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        HEAP.lock()
            .init(start as *mut u8, end.saturating_sub(start) as usize)
    };
}

/// Bytes the heap was given.
pub fn size() -> usize {
    HEAP.lock().size()
}
