//! The guest's side of hvt's receive queues (lamina_abi::ring::rx): the
//! tender's I/O thread puts each frame from a tap into a byte ring in the
//! reserved area; the guest takes frames with loads and stores, and learns
//! that input waits by looking, so that it exits only to sleep.

use core::sync::atomic::{fence, AtomicU32, Ordering};
use lamina_abi::ring::{offsets, rx};

/// A queue the tender laid out.
#[derive(Debug, Clone, Copy)]
struct Queue {
    /// The device handle whose frames it carries.
    handle: u64,
    /// Guest address of its descriptor.
    descriptor: usize,
    /// Guest address of its bytes.
    base: usize,
    /// Bytes (a power of two).
    size: u32,
}

/// The queues of the ring at `ring`.
pub struct Queues {
    ring: usize,
    queues: [Option<Queue>; rx::MAX_QUEUES],
}

/// A frame the tender put in a queue did not fit the caller's buffer, or
/// the queue held a record that cannot be (both dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped;

/// The `u32` at guest address `at`, shared with the tender.
fn word(at: usize) -> &'static AtomicU32 {
    // SAFETY: every address passed is a 4-byte aligned word of the ring's
    // reserved area (the ring is 64-byte aligned; the offsets are the
    // ABI's), identity-mapped, outside heap and stack, for the guest's
    // lifetime; both sides access these words only atomically.
    unsafe { &*(at as *const AtomicU32) }
}

impl Queues {
    /// Reads the table of the ring at `ring` and enables the queues.
    ///
    /// # Safety
    /// `ring` must be the ring the tender offered with
    /// HOST_FEATURE_RX_QUEUES (reserved, identity-mapped, 64-byte aligned).
    pub unsafe fn enable(ring: usize) -> Queues {
        let mut queues = [None; rx::MAX_QUEUES];
        for (i, slot) in queues.iter_mut().enumerate() {
            let descriptor = ring + rx::TABLE + i * rx::DESCRIPTOR_BYTES;
            let size = word(descriptor + rx::field::SIZE).load(Ordering::Relaxed);
            let offset = word(descriptor + rx::field::OFFSET).load(Ordering::Relaxed) as usize;
            let fits = offset >= rx::DATA
                && (offset as u64 + u64::from(size)) <= lamina_abi::ring::RESERVED_BYTES;
            if size == 0 || !size.is_power_of_two() || !fits {
                break;
            }
            *slot = Some(Queue {
                handle: u64::from(word(descriptor + rx::field::HANDLE).load(Ordering::Relaxed)),
                descriptor,
                base: ring + offset,
                size,
            });
        }
        word(ring + offsets::RX_ENABLE).store(1, Ordering::Release);
        Queues { ring, queues }
    }

    fn queue(&self, handle: u64) -> Option<&Queue> {
        self.queues.iter().flatten().find(|q| q.handle == handle)
    }

    /// Whether device `handle` has a queue (else it reads through the
    /// ring's entries).
    pub fn serves(&self, handle: u64) -> bool {
        self.queue(handle).is_some()
    }

    /// The set of handles whose queues hold a frame.
    pub fn ready(&self) -> u64 {
        let mut ready = 0;
        for queue in self.queues.iter().flatten() {
            let tail = word(queue.descriptor + rx::field::TAIL).load(Ordering::Acquire);
            let head = word(queue.descriptor + rx::field::HEAD).load(Ordering::Relaxed);
            if tail != head && queue.handle < 64 {
                ready |= 1 << queue.handle;
            }
        }
        ready
    }

    /// Takes the next frame of device `handle` into `buf`: its length, or
    /// `None` when the queue is empty.
    pub fn take(&self, handle: u64, buf: &mut [u8]) -> Result<Option<usize>, Dropped> {
        self.take_split(handle, &mut [], buf)
    }

    /// Takes the next record of device `handle`: its first `header.len()`
    /// bytes into `header` (the virtio-net header of a link that has one),
    /// the rest into `buf`; the length of the rest, or `None` when the
    /// queue is empty. A record shorter than the header is dropped.
    pub fn take_split(
        &self,
        handle: u64,
        header: &mut [u8],
        buf: &mut [u8],
    ) -> Result<Option<usize>, Dropped> {
        let Some(queue) = self.queue(handle) else {
            return Ok(None);
        };
        let tail_word = word(queue.descriptor + rx::field::TAIL);
        let head_word = word(queue.descriptor + rx::field::HEAD);
        let mut head = head_word.load(Ordering::Relaxed);
        let result = loop {
            if head == tail_word.load(Ordering::Acquire) {
                return Ok(None);
            }
            let at = (head & (queue.size - 1)) as usize;
            // SAFETY: `at` is inside the queue's bytes and 16-byte aligned
            // (records are), and the tender published the record (the
            // Acquire load of its tail above) and does not write it again
            // until `head` passes it.
            let record =
                unsafe { core::ptr::read_volatile((queue.base + at) as *const rx::Record) };
            if record.len == rx::WRAP {
                head = head.wrapping_add(queue.size - at as u32);
                continue;
            }
            let len = record.len as usize;
            let data = queue.base + at + size_of::<rx::Record>();
            let inside = at + size_of::<rx::Record>() + len <= queue.size as usize;
            head = head.wrapping_add(rx::record_bytes(record.len));
            let frame_len = len.wrapping_sub(header.len());
            match buf.get_mut(..frame_len) {
                Some(into) if inside && len >= header.len() => {
                    // SAFETY: `[data, data+len)` is inside the queue (checked),
                    // published and not rewritten until `head` passes it;
                    // `header` and `into` are the caller's buffers, which
                    // cannot overlap the reserved area, and together hold
                    // exactly `len` bytes.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            data as *const u8,
                            header.as_mut_ptr(),
                            header.len(),
                        );
                        core::ptr::copy_nonoverlapping(
                            (data + header.len()) as *const u8,
                            into.as_mut_ptr(),
                            frame_len,
                        );
                    };
                    break Ok(Some(frame_len));
                }
                _ => break Err(Dropped),
            }
        };
        head_word.store(head, Ordering::Release);
        // If the tender stopped reading because the queue was full and went
        // to sleep, this made room: tell it (it stored `stalled` and
        // `needs_kick`, fenced, then looked at `head`).
        fence(Ordering::SeqCst);
        if word(queue.descriptor + rx::field::STALLED).load(Ordering::Relaxed) != 0 {
            super::hvt::kick_if_asleep(self.ring);
        }
        result
    }

    /// Announces that the guest is about to wait in POLL and looks once
    /// more: the ready set if a frame came in the meantime (then no POLL).
    pub fn about_to_wait(&self) -> u64 {
        word(self.ring + offsets::GUEST_WAITING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let ready = self.ready();
        if ready != 0 {
            self.done_waiting();
        }
        ready
    }

    /// The wait is over.
    pub fn done_waiting(&self) {
        word(self.ring + offsets::GUEST_WAITING).store(0, Ordering::Relaxed);
    }
}
