//! The split virtqueue against a device that writes what it likes into
//! the used ring: indices, entries and flags, interleaved with the
//! driver's own descriptors, pushes and pops.
#![no_main]

use lamina_virtio::virtqueue::{Queue, DESC_NEXT, DESC_WRITE};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// One queue of each size, reset before each input: a queue's memory is
/// never freed (as in the unikernel), and a static keeps it visible to the
/// leak checker.
struct Pool(Vec<Queue>);

// SAFETY: libFuzzer runs the target on one thread; the queues (whose
// cells are not thread-safe) are never touched from another.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

static QUEUES: OnceLock<Pool> = OnceLock::new();

fn queue(log2: u8) -> &'static Queue {
    let pool = QUEUES.get_or_init(|| Pool((0..11).map(|i| Queue::new(1 << i, 0)).collect()));
    let queue = &pool.0[usize::from(log2)];
    queue.reset();
    queue
}

/// The device's side: stores into the used ring, as a device does, at
/// `offset` bytes into it (kept inside the ring).
fn device_store(queue: &Queue, offset: usize, value: &[u8]) {
    let (_, _, used) = queue.addresses();
    let ring_len = 6 + 8 * usize::from(queue.size());
    if offset + value.len() > ring_len {
        return;
    }
    for (i, byte) in value.iter().enumerate() {
        // SAFETY: the used ring is `ring_len` bytes at `used` (identity
        // mapped, as for a device), checked above; the driver reads it
        // only through volatile loads.
        unsafe { core::ptr::write_volatile((used as usize + offset + i) as *mut u8, *byte) };
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&size, mut ops)) = bytes.split_first() else {
        return;
    };
    // Up to 1024 entries (QEMU's largest): resetting larger queues would
    // make each input slow.
    let queue = queue(size % 11);
    let n = queue.size();
    while let Some((&op, rest)) = ops.split_first() {
        let arg = |i: usize| rest.get(i).copied().unwrap_or(0);
        let arg16 = |i: usize| u16::from_le_bytes([arg(i), arg(i + 1)]);
        let arg32 = |i: usize| u32::from_le_bytes([arg(i), arg(i + 1), arg(i + 2), arg(i + 3)]);
        let used = match op % 6 {
            0 => {
                let flags = if arg(0) & 1 != 0 {
                    DESC_WRITE
                } else {
                    DESC_NEXT
                };
                queue.set_descriptor(arg16(1), 0x1000, arg32(3), flags, arg16(7));
                queue.push(arg16(1));
                9
            }
            1 => {
                let _ = queue.publish();
                assert_eq!(queue.unpublished(), 0);
                0
            }
            2 => {
                // A used entry: slot, id, len.
                let slot = usize::from(arg16(0) % n);
                let mut entry = [0u8; 8];
                entry.copy_from_slice(&rest.get(2..10).unwrap_or(&[0; 8])[..8]);
                device_store(queue, 4 + 8 * slot, &entry);
                10
            }
            3 => {
                device_store(queue, 2, &arg16(0).to_le_bytes()); // used index
                2
            }
            4 => {
                device_store(queue, 0, &arg16(0).to_le_bytes()); // used flags
                queue.suppress_interrupts();
                2
            }
            _ => {
                let had = queue.has_used();
                match queue.pop_used() {
                    Some((id, _len)) => {
                        assert!(had);
                        assert!(id < n);
                    }
                    None => assert!(!had || queue.is_broken()),
                }
                if queue.is_broken() {
                    assert!(!queue.has_used() && queue.pop_used().is_none());
                }
                0
            }
        };
        ops = rest.get(used..).unwrap_or(&[]);
    }
});
