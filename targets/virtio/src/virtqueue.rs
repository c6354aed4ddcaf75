//! The split virtqueue (virtio 1.2, section 2.7) and DMA memory: plain
//! memory and no instructions of its own, so it is built and unit-tested on
//! the host too, with the tests playing the device.
//!
//! Guest memory is identity-mapped, so an address the driver hands the
//! device is the pointer's value. The driver owns the descriptor table and
//! the available ring and only writes them; the device owns the used ring,
//! which is read through volatile loads and checked: an index or length
//! the device makes up marks the queue broken, and a broken queue returns
//! nothing more (it never panics and never touches memory outside its
//! buffers).

use alloc::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use core::cell::Cell;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// The descriptor continues in `next`.
pub const DESC_NEXT: u16 = 1;
/// The device writes the buffer (else it reads it).
pub const DESC_WRITE: u16 = 2;
/// Available ring flag: the driver needs no interrupt for this queue.
const AVAIL_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device needs no notification now.
const USED_NO_NOTIFY: u16 = 1;

/// Zeroed memory that the device may read or write: never moved, and in
/// a unikernel never freed (devices live as long as the unikernel, and one
/// the driver gave up on may still write). On the host, where the device is
/// made up by a test or fuzz target and stops when the driver does, it is
/// freed when dropped.
pub struct Dma {
    base: *mut u8,
    len: usize,
}

impl Dma {
    /// `len` zeroed bytes aligned to a page.
    pub fn new(len: usize) -> Dma {
        let Ok(layout) = Layout::from_size_align(len.max(1), 4096) else {
            panic!("virtio: a DMA area of {len} bytes is too large");
        };
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        if base.is_null() {
            handle_alloc_error(layout);
        }
        Dma { base, len }
    }

    /// The physical (= virtual) address of byte `offset`, if inside.
    pub fn address(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.len);
        self.base as u64 + offset.min(self.len) as u64
    }

    /// Copies `bytes` in at `offset`; false (nothing copied) if they do not fit.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the range is inside the allocation (checked above), which
        // the device does not use while the driver fills it.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(offset), bytes.len())
        };
        true
    }

    /// Copies `out.len()` bytes out from `offset`; false if out of range.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: inside the allocation (checked above); the device
        // finished with these bytes (the driver read their used entry).
        unsafe {
            core::ptr::copy_nonoverlapping(self.base.add(offset), out.as_mut_ptr(), out.len())
        };
        true
    }
}

#[cfg(not(lamina_guest))]
impl Drop for Dma {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.len.max(1), 4096) {
            // SAFETY: allocated in `new` with this layout, freed once; on
            // the host no device uses it any more (see the type's comment).
            unsafe { alloc::alloc::dealloc(self.base, layout) };
        }
    }
}

/// A split virtqueue of `size` entries in one page-aligned allocation:
/// descriptors, then the available ring, then the used ring.
pub struct Queue {
    /// The queue's index on its device (what a notification names).
    pub index: u16,
    size: u16,
    memory: Dma,
    avail: usize,
    used: usize,
    /// Available entries written, published or not.
    next_avail: Cell<u16>,
    /// The available index the device has been told.
    published: Cell<u16>,
    /// Used entries consumed.
    last_used: Cell<u16>,
    broken: Cell<bool>,
}

impl Queue {
    /// A queue of `size` (a power of two, at most 32768) entries.
    pub fn new(size: u16, index: u16) -> Queue {
        let n = size as usize;
        let avail = 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        let len = used + 6 + 8 * n;
        Queue {
            index,
            size,
            memory: Dma::new(len),
            avail,
            used,
            next_avail: Cell::new(0),
            published: Cell::new(0),
            last_used: Cell::new(0),
            broken: Cell::new(false),
        }
    }

    /// Empties the queue as if it were new: zeroed rings, nothing pushed,
    /// published or used, not broken. Only while the device does not use
    /// it (before its address is given, or after a device reset); the
    /// virtqueue fuzz target reuses its queues this way.
    pub fn reset(&self) {
        let zeros = [0u8; 256];
        let mut at = 0;
        while at < self.memory.len {
            let n = zeros.len().min(self.memory.len - at);
            self.memory.write(at, &zeros[..n]);
            at += n;
        }
        self.next_avail.set(0);
        self.published.set(0);
        self.last_used.set(0);
        self.broken.set(false);
    }

    /// The number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Addresses of the descriptor table, the available ring and the used ring.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (
            self.memory.address(0),
            self.memory.address(self.avail),
            self.memory.address(self.used),
        )
    }

    fn write16(&self, offset: usize, value: u16) {
        debug_assert!(offset + 2 <= self.memory.len);
        // SAFETY: every caller passes an offset inside the rings laid out in
        // `new` (indices are reduced modulo `size`), aligned to 2.
        unsafe { write_volatile(self.memory.base.add(offset) as *mut u16, value) }
    }

    fn read16(&self, offset: usize) -> u16 {
        debug_assert!(offset + 2 <= self.memory.len);
        // SAFETY: as for `write16`; the device may write these bytes at any
        // time, hence the volatile load.
        unsafe { read_volatile(self.memory.base.add(offset) as *const u16) }
    }

    fn read32(&self, offset: usize) -> u32 {
        debug_assert!(offset + 4 <= self.memory.len);
        // SAFETY: as for `read16`, aligned to 4 (the used ring is).
        unsafe { read_volatile(self.memory.base.add(offset) as *const u32) }
    }

    /// Fills descriptor `id` (taken modulo the size).
    pub fn set_descriptor(&self, id: u16, address: u64, len: u32, flags: u16, next: u16) {
        let at = 16 * (id % self.size) as usize;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&address.to_le_bytes());
        bytes[8..12].copy_from_slice(&len.to_le_bytes());
        bytes[12..14].copy_from_slice(&flags.to_le_bytes());
        bytes[14..].copy_from_slice(&(next % self.size).to_le_bytes());
        self.memory.write(at, &bytes);
    }

    /// Offers the chain starting at descriptor `head`; the device sees it
    /// at the next [`publish`](Self::publish).
    pub fn push(&self, head: u16) {
        let slot = self.next_avail.get() % self.size;
        self.write16(self.avail + 4 + 2 * slot as usize, head % self.size);
        self.next_avail.set(self.next_avail.get().wrapping_add(1));
    }

    /// How many pushed chains wait for [`publish`](Self::publish).
    pub fn unpublished(&self) -> usize {
        self.next_avail.get().wrapping_sub(self.published.get()) as usize
    }

    /// Makes the pushed chains visible to the device; returns whether the
    /// device asks to be notified.
    pub fn publish(&self) -> bool {
        if self.unpublished() == 0 {
            return false;
        }
        // The ring entries before the index (a compiler barrier on x86).
        fence(Ordering::Release);
        self.write16(self.avail + 2, self.next_avail.get());
        self.published.set(self.next_avail.get());
        // The index before reading the device's flag: a full barrier.
        fence(Ordering::SeqCst);
        self.read16(self.used) & USED_NO_NOTIFY == 0
    }

    /// Asks the device not to interrupt for this queue (a hint).
    pub fn suppress_interrupts(&self) {
        self.write16(self.avail, AVAIL_NO_INTERRUPT);
    }

    /// Whether the device has returned chains not yet popped.
    pub fn has_used(&self) -> bool {
        !self.broken.get() && self.read16(self.used + 2) != self.last_used.get()
    }

    /// Whether the device broke the ring's rules; the queue is dead then.
    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// The next chain the device returned: its head and the number of
    /// bytes the device wrote. `None` when there is none, or the queue is
    /// broken (an index out of range, or more entries than the ring holds).
    pub fn pop_used(&self) -> Option<(u16, u32)> {
        if self.broken.get() {
            return None;
        }
        let last = self.last_used.get();
        let index = self.read16(self.used + 2);
        if index == last {
            return None;
        }
        if index.wrapping_sub(last) > self.size {
            self.break_queue("used index ran ahead of the ring");
            return None;
        }
        // The entry after the index.
        fence(Ordering::Acquire);
        let at = self.used + 4 + 8 * (last % self.size) as usize;
        let id = self.read32(at);
        let len = self.read32(at + 4);
        self.last_used.set(last.wrapping_add(1));
        if id >= self.size as u32 {
            self.break_queue("used entry names no descriptor");
            return None;
        }
        Some((id as u16, len))
    }

    fn break_queue(&self, why: &str) {
        log::error!(
            "virtio: queue {}: {why}: the device is not used any more",
            self.index
        );
        self.broken.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Plays the device: writes used entry `slot` and the used index.
    fn device_returns(queue: &Queue, slot: u16, id: u32, len: u32, index: u16) {
        let (_, _, used) = queue.addresses();
        let entry = used as usize + 4 + 8 * (slot % queue.size()) as usize;
        // SAFETY: the used ring of `queue`, inside its allocation (the slot
        // is reduced modulo the size); the test is the only other user.
        unsafe {
            write_volatile(entry as *mut u32, id);
            write_volatile((entry + 4) as *mut u32, len);
            write_volatile((used as usize + 2) as *mut u16, index);
        }
    }

    /// What the driver published: the available index and ring.
    fn available(queue: &Queue) -> (u16, Vec<u16>) {
        let (_, avail, _) = queue.addresses();
        // SAFETY: the available ring of `queue`, inside its allocation.
        unsafe {
            let index = read_volatile((avail as usize + 2) as *const u16);
            let ring = (0..queue.size())
                .map(|i| read_volatile((avail as usize + 4 + 2 * i as usize) as *const u16))
                .collect();
            (index, ring)
        }
    }

    #[test]
    fn chains_are_published_in_batches() {
        let queue = Queue::new(8, 0);
        queue.push(3);
        queue.push(5);
        assert_eq!(queue.unpublished(), 2);
        assert_eq!(available(&queue).0, 0, "nothing visible before publish");
        assert!(queue.publish(), "the device asks for a notification");
        assert_eq!(available(&queue), (2, vec![3, 5, 0, 0, 0, 0, 0, 0]));
        assert!(!queue.publish(), "nothing new: no notification");
    }

    #[test]
    fn used_entries_come_back_in_order() {
        let queue = Queue::new(4, 0);
        assert_eq!(queue.pop_used(), None);
        device_returns(&queue, 0, 2, 100, 1);
        device_returns(&queue, 1, 0, 60, 2);
        assert!(queue.has_used());
        assert_eq!(queue.pop_used(), Some((2, 100)));
        assert_eq!(queue.pop_used(), Some((0, 60)));
        assert_eq!(queue.pop_used(), None);
        // The 16-bit index wraps.
        for i in 2..70_000u32 {
            device_returns(&queue, i as u16, i % 4, 1, (i + 1) as u16);
            assert_eq!(queue.pop_used(), Some(((i % 4) as u16, 1)));
        }
        assert!(!queue.is_broken());
    }

    #[test]
    fn a_made_up_descriptor_breaks_the_queue() {
        let queue = Queue::new(4, 0);
        device_returns(&queue, 0, 4, 1, 1);
        assert_eq!(queue.pop_used(), None);
        assert!(queue.is_broken());
        device_returns(&queue, 1, 1, 1, 2);
        assert_eq!(queue.pop_used(), None, "a broken queue stays broken");
        assert!(!queue.has_used());
    }

    #[test]
    fn a_used_index_beyond_the_ring_breaks_the_queue() {
        let queue = Queue::new(4, 0);
        device_returns(&queue, 0, 1, 1, 5);
        assert_eq!(queue.pop_used(), None);
        assert!(queue.is_broken());
    }

    #[test]
    fn a_reset_queue_is_as_new() {
        let queue = Queue::new(4, 0);
        queue.push(1);
        assert!(queue.publish());
        device_returns(&queue, 0, 4, 1, 1);
        assert_eq!(queue.pop_used(), None);
        assert!(queue.is_broken());
        queue.reset();
        assert!(!queue.is_broken() && !queue.has_used());
        assert_eq!(
            (queue.unpublished(), available(&queue)),
            (0, (0, vec![0; 4]))
        );
        device_returns(&queue, 0, 3, 9, 1);
        assert_eq!(queue.pop_used(), Some((3, 9)));
    }

    #[test]
    fn dma_copies_stay_inside() {
        let dma = Dma::new(16);
        assert!(dma.write(8, &[1; 8]));
        assert!(!dma.write(9, &[1; 8]));
        assert!(!dma.write(usize::MAX, &[1]));
        let mut out = [0u8; 8];
        assert!(dma.read(8, &mut out));
        assert_eq!(out, [1; 8]);
        assert!(!dma.read(12, &mut out));
        assert_eq!(dma.address(16) - dma.address(0), 16);
    }
}
