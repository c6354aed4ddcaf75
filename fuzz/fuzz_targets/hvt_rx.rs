//! The hvt tender's receive queues (`lamina_hvt::rx`, served by
//! `lamina_hvt::ring::serve_for_poll` as the vCPU thread does while the
//! guest waits in POLL) against a guest that scribbles over the reserved
//! area: its `head` indices, the descriptors, RX_ENABLE, GUEST_WAITING,
//! `stalled`, the entries' indices, any word. The queues are laid out by
//! `lamina_hvt::rx::lay_out` over one or two real network devices
//! (socketpairs whose host ends send frames of chosen lengths, oversize
//! ones included); a model guest takes records as
//! targets/solo5/src/guest/sys/rx.rs does.
//!
//! Input: flags (bit 0: a second device, handle 2; bit 1: offload link on
//! device 1; bit 2: on device 2), then operations, each a byte then its
//! arguments: send a frame (device, u16 length), send a burst (device,
//! count, u16 length), scribble (what, u32 value), serve, take (device,
//! count), submit an entry (operation, handle, u16 address, u16 length).
//! After the operations the guest behaves: it enables the queues and takes
//! every frame while the tender serves, until the taps are empty.
//!
//! Checked besides no panic:
//! - every byte a serve changes in the reserved area is a byte it may
//!   write: a queue's free bytes (not the records the guest has not
//!   taken), its descriptor's `tail` and `stalled`, and the entries'
//!   answer words and commits (the area past the queues is read-only but
//!   for the guest's own writes: a serve's write there faults);
//! - a queue whose `head` is not within its size behind the tender's tail
//!   stops the guest with an error when the queues are enabled, and an
//!   error names a corrupt queue only then;
//! - frames of a queue the guest did not scribble over come out in order
//!   and intact (those larger than the link dropped), and all of them once
//!   the guest behaves.
#![no_main]

use lamina_abi::ring::{offsets, op, rx, RingEntry, MASK, MAX_HANDLES, RESERVED_BYTES, RING_BYTES};
use lamina_hvt::ring::{serve_for_poll, Shared};
use lamina_tender::devices::net::NetDevice;
use lamina_tender::mem::{GuestMemory, SharedView};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

/// Guest memory below the ring (for the entries' buffers).
const BELOW: u64 = 64 << 10;
/// The ring: the reserved top of guest memory, as the tender places it.
const RING: u64 = BELOW;
const MEM: u64 = BELOW + RESERVED_BYTES;
/// The largest frame the devices' links take (MTU 1500, no virtio-net
/// header negotiated): the tender's `largest_frame`.
const LARGEST: usize = 1514;
/// virtio-net header before each frame on an offload link.
const VNET_HEADER: usize = 10;
/// Frames the host sends at most in one execution.
const MAX_FRAMES: usize = 1024;

/// The input, read from the front; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u8(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// A queue as the guest read it from the table when it enabled them.
#[derive(Clone, Copy)]
struct GuestQueue {
    handle: u64,
    descriptor: u64,
    base: u64,
    size: u32,
}

/// What the harness knows of one device and its queue.
struct Device {
    handle: u64,
    host: OwnedFd,
    offload: bool,
    /// Frames sent and not yet taken, in order (oversize and empty ones,
    /// which the tender drops, left out).
    expected: VecDeque<Vec<u8>>,
    /// Frames come out exactly as sent: no offload link (which may drop
    /// one) and no read entry took one from the tap.
    exact: bool,
    /// The guest never scribbled over the queue's indices or bytes.
    clean: bool,
    /// The tender's tail: the last one it published.
    tail: u32,
}

/// The descriptor word `field` of queue `q`.
fn descriptor(q: usize, field: usize) -> u64 {
    RING + (rx::TABLE + q * rx::DESCRIPTOR_BYTES + field) as u64
}

fn load(view: &SharedView, gpa: u64) -> u32 {
    view.atomic_u32(gpa)
        .expect("a ring word")
        .load(Ordering::Acquire)
}

/// The guest (the harness) writes a word; the serve's check looks at it
/// again ([`Harness::serve`]).
fn store(view: &SharedView, gpa: u64, value: u32) {
    // Past the queues the pages are read-only ([`protect_past_live`]):
    // writable for the guest's write only.
    let past_live = gpa >= RING + LIVE.get() as u64;
    if past_live {
        protect_past_live(view, false);
    }
    view.atomic_u32(gpa)
        .expect("a ring word")
        .store(value, Ordering::Release);
    if past_live {
        protect_past_live(view, true);
    }
    guest_wrote(gpa, 4);
}

/// Notes that the guest wrote `len` bytes at `gpa`: the mirror of the
/// reserved area no longer holds them, and the next execution zeroes
/// them.
fn guest_wrote(gpa: u64, len: usize) {
    if let Some(start) = gpa.checked_sub(RING).filter(|&s| s < RESERVED_BYTES) {
        let start = start as usize;
        let end = (start + len).min(RESERVED_BYTES as usize);
        GUEST_WROTE.with_borrow_mut(|w| w.push((start, end)));
        if end > LIVE.get() {
            SCRIBBLED_PAST_LIVE.with_borrow_mut(|w| w.push((start, end)));
        }
    }
}

/// The guest's `enable` (targets/solo5/src/guest/sys/rx.rs): reads the
/// table, sets RX_ENABLE.
fn enable(view: &SharedView) -> Vec<GuestQueue> {
    let mut queues = Vec::new();
    for q in 0..rx::MAX_QUEUES {
        let size = load(view, descriptor(q, rx::field::SIZE));
        let offset = load(view, descriptor(q, rx::field::OFFSET)) as usize;
        let fits = offset >= rx::DATA && offset as u64 + u64::from(size) <= RESERVED_BYTES;
        if size == 0 || !size.is_power_of_two() || !fits {
            break;
        }
        queues.push(GuestQueue {
            handle: u64::from(load(view, descriptor(q, rx::field::HANDLE))),
            descriptor: descriptor(q, 0),
            base: RING + offset as u64,
            size,
        });
    }
    store(view, RING + offsets::RX_ENABLE as u64, 1);
    queues
}

/// What one take of the guest found.
enum Taken {
    Empty,
    /// A frame, where it lies in the reserved area (offsets from the
    /// ring): compared in place, where a copy into a buffer of its own
    /// (a byte loop under the instrumentation, and an allocation) was a
    /// tenth of an execution.
    Frame(std::ops::Range<usize>),
    Dropped,
}

/// The guest's `take` into a buffer of [`LARGEST`] bytes (wrap markers
/// followed at most twice: a guest that scribbled over its own queue may
/// find nothing but markers), from `head`, which it moves past what it
/// took, in `area`, the reserved area (read as the guest reads its own
/// memory). The caller writes `head` back: nothing but the guest runs
/// between its takes, so one store after many is what the tender sees.
fn take(area: &[u8], queue: &GuestQueue, tail: u32, head: &mut u32) -> Taken {
    let base = (queue.base - RING) as usize;
    let mut wraps = 0;
    loop {
        if *head == tail || wraps > 2 {
            return Taken::Empty;
        }
        let at = *head & (queue.size - 1);
        let record = base + at as usize;
        let len = area
            .get(record..record + 4)
            .expect("a record inside the queue");
        let len = u32::from_ne_bytes(len.try_into().expect("four bytes"));
        if len == rx::WRAP {
            *head = head.wrapping_add(queue.size - at);
            wraps += 1;
            continue;
        }
        let inside = at as usize + 8 + len as usize <= queue.size as usize;
        *head = head.wrapping_add(rx::record_bytes(len));
        if inside && len as usize <= LARGEST {
            let start = record + 8;
            return Taken::Frame(start..start + len as usize);
        }
        return Taken::Dropped;
    }
}

/// A frame of `len` bytes, number `seq`, after what `out` holds: an
/// Ethernet header with a local EtherType (no checksum applies) when it is
/// long enough, its number at both ends, and a filling that differs from
/// frame to frame (a memset: a byte loop under the fuzzer's
/// instrumentation took a third of an execution).
fn append_frame(out: &mut Vec<u8>, len: usize, seq: u32) {
    let start = out.len();
    out.resize(start + len, (seq as u8) ^ 0x5a);
    let frame = &mut out[start..];
    if len >= 18 {
        frame[..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x88, 0xb5]);
        frame[14..18].copy_from_slice(&seq.to_le_bytes());
    }
    if len >= 22 {
        frame[len - 4..].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Whether the device's tap has a frame waiting for the tender.
fn tap_pending(net: &NetDevice) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer that lives across the call; MSG_PEEK
    // leaves the datagram where it is.
    let rc = unsafe {
        libc::recv(
            net.fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    rc >= 0
}

/// The bytes of the reserved area a serve may change, as sorted
/// `(start, end)` offsets from the ring.
fn writable(view: &SharedView, devices: &[Device], queues: &[GuestQueue]) -> Vec<(usize, usize)> {
    let mut ranges = vec![
        // ENT_HEAD, COM_TAIL; WRITE_ERRORS (not NEEDS_KICK, the I/O
        // thread's).
        (offsets::ENT_HEAD, offsets::NEEDS_KICK),
        (offsets::WRITE_ERRORS, offsets::WRITE_ERRORS + 4),
        (offsets::COMMITS, RING_BYTES),
    ];
    for device in devices {
        let handle = device.handle as usize;
        if handle < MAX_HANDLES {
            let at = offsets::WRITE_ERRORS_BY_HANDLE + 4 * handle;
            ranges.push((at, at + 4));
        }
    }
    for (q, (device, queue)) in devices.iter().zip(queues).enumerate() {
        let table = rx::TABLE + q * rx::DESCRIPTOR_BYTES;
        ranges.push((table + rx::field::TAIL, table + rx::field::TAIL + 4));
        ranges.push((table + rx::field::STALLED, table + rx::field::STALLED + 4));
        // The free bytes: from the tail round to the head. With a head the
        // tender must refuse, none.
        let head = load(view, queue.descriptor + rx::field::HEAD as u64);
        let used = device.tail.wrapping_sub(head);
        if used > queue.size {
            continue;
        }
        let base = (queue.base - RING) as usize;
        let size = queue.size as usize;
        let free = size - used as usize;
        let start = (device.tail & (queue.size - 1)) as usize;
        let first = free.min(size - start);
        ranges.push((base + start, base + start + first));
        if free > first {
            ranges.push((base, base + free - first));
        }
    }
    ranges.retain(|(start, end)| start < end);
    ranges.sort_unstable();
    ranges
}

/// The guest's memory, all zero, as `GuestMemory::anywhere` maps it. Only
/// what the last execution could have written is zeroed: everything below
/// the end of its queues ([`LIVE`]), and the words the guest scribbled on
/// past it (the tender cannot write there: [`Harness::serve`]). Zeroing
/// all 2 MiB, half of it never written, was a tenth of an execution.
fn zeroed_memory() -> SharedView {
    let view = MEMORY.with(SharedView::clone);
    protect_past_live(&view, false);
    let zero = |start: u64, len: u64| {
        let offset = view.checked_offset(start, len).expect("guest memory");
        // SAFETY: inside the mapping (checked), which `view` keeps alive,
        // and which nothing else uses between executions.
        unsafe {
            std::ptr::write_bytes(
                (view.host_address() as *mut u8).add(offset),
                0,
                len as usize,
            )
        };
    };
    zero(0, RING + LIVE.get() as u64);
    for (start, end) in SCRIBBLED_PAST_LIVE.with_borrow_mut(std::mem::take) {
        zero(RING + start as u64, (end - start) as u64);
    }
    view
}

/// The end of the queues' bytes (from the ring), past which a serve must
/// not write; page-aligned, as `rx::lay_out` places queues.
fn live_end(queues: &[GuestQueue]) -> usize {
    let end = queues
        .iter()
        .map(|q| (q.base - RING) as usize + q.size as usize)
        .max()
        .unwrap_or(rx::DATA);
    assert!(end.is_multiple_of(4096), "queues ending inside a page");
    end
}

/// Makes the reserved area past [`LIVE`] read-only or writable again.
/// It is read-only while an execution runs, but for the guest's writes
/// there: a serve that writes there faults. Comparing it after each serve
/// instead was a third of an execution; making it read-only around each
/// serve, a tenth.
fn protect_past_live(view: &SharedView, read_only: bool) {
    if PAST_LIVE_READ_ONLY.replace(read_only) == read_only {
        return;
    }
    let live = LIVE.get();
    let len = RESERVED_BYTES - live as u64;
    if len == 0 {
        return;
    }
    let offset = view
        .checked_offset(RING + live as u64, len)
        .expect("the reserved area");
    let prot = if read_only {
        libc::PROT_READ
    } else {
        libc::PROT_READ | libc::PROT_WRITE
    };
    // SAFETY: whole pages (`live` and the mapping are page-aligned) inside
    // the mapping (checked), which `view` keeps alive; only the harness
    // and the serve it calls use it, and neither holds a reference into
    // these pages across the change.
    let rc = unsafe {
        libc::mprotect(
            (view.host_address() as *mut u8).add(offset).cast(),
            len as usize,
            prot,
        )
    };
    assert_eq!(rc, 0, "mprotect: {}", std::io::Error::last_os_error());
}

/// The ranges of the reserved area a serve must leave alone: those
/// between the `writable` ones.
fn protected(writable: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut at = 0;
    for &(start, end) in writable.iter().chain([&(RESERVED_BYTES as usize, 0)]) {
        if start > at {
            ranges.push((at, start));
        }
        at = at.max(end);
    }
    ranges
}

/// The reserved area of guest memory, as bytes.
fn reserved(view: &SharedView) -> &[u8] {
    let offset = view
        .checked_offset(RING, RESERVED_BYTES)
        .expect("the reserved area");
    // SAFETY: `[offset, offset + RESERVED_BYTES)` is inside the mapping
    // (checked above), which `view` keeps alive for the lifetime of the
    // slice; nothing writes guest memory while the harness reads it (the
    // harness is single-threaded, the tender serves only when called). A
    // plain slice, not the view's volatile accessors, whose instrumented
    // loops over 2 MiB would take most of each execution.
    unsafe {
        std::slice::from_raw_parts(
            (view.host_address() as *const u8).add(offset),
            RESERVED_BYTES as usize,
        )
    }
}

/// The parts of sorted, disjoint `a` that lie in sorted, disjoint `b`.
fn intersect(a: &[(usize, usize)], b: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Sorts `ranges` and merges those that overlap or touch.
fn merged(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

thread_local! {
    /// Guest memory with its top reserved, kept from one execution to the
    /// next and zeroed at each: a new shared mapping faults in 2 MiB of
    /// fresh pages each time, most of an execution's time.
    static MEMORY: SharedView = {
        let mut mem = GuestMemory::anywhere(MEM).expect("guest memory");
        mem.reserve_top(RING).expect("the reserved top");
        mem.shared_view()
    };
    /// The mirror buffer, kept from one execution to the next: 2 MiB
    /// allocated (and faulted in) each time would cost as much as the rest
    /// of an execution.
    static MIRRORS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The ranges of the reserved area the guest wrote since the last
    /// serve (offsets from the ring).
    static GUEST_WROTE: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
    /// The end of this execution's queues (offset from the ring): the
    /// tender writes nothing past it.
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(RESERVED_BYTES as usize) };
    /// Whether the reserved area past [`LIVE`] is read-only now.
    static PAST_LIVE_READ_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// What the guest wrote past [`LIVE`] in this execution.
    static SCRIBBLED_PAST_LIVE: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Harness {
    fn drop(&mut self) {
        let mirror = std::mem::take(&mut self.mirror);
        MIRRORS.with_borrow_mut(|m| m.push(mirror));
    }
}

/// The harness: the guest's memory, its devices, and the model guest.
struct Harness {
    view: SharedView,
    /// The tender's devices, in the order of `devices`.
    nets: Vec<NetDevice>,
    devices: Vec<Device>,
    queues: Vec<GuestQueue>,
    /// [`live_end`] of `queues`.
    live: usize,
    shared: Shared,
    /// The reserved area as it was after the last serve, except where the
    /// serve may have written (`stale`) and where the guest wrote since
    /// (`GUEST_WROTE`); empty before the first serve. Checking a serve
    /// against it, rather than copying the area before and after each
    /// serve, halved an execution's time.
    mirror: Vec<u8>,
    /// What the last serve was allowed to write: the mirror does not hold
    /// it.
    stale: Vec<(usize, usize)>,
    sent: usize,
    /// What [`Harness::send`] writes to a device, kept across frames.
    send_buffer: Vec<u8>,
}

impl Harness {
    /// Sends a frame of `len` bytes from the host end of device `d`.
    fn send(&mut self, d: usize, len: usize) {
        if self.sent >= MAX_FRAMES {
            return;
        }
        let device = &mut self.devices[d];
        let header = if device.offload { VNET_HEADER } else { 0 };
        // One buffer for every datagram: frames of up to 64 KiB allocated
        // afresh went through the sanitizer's quarantine, new pages each.
        let bytes = &mut self.send_buffer;
        bytes.clear();
        bytes.resize(header, 0);
        append_frame(bytes, len, self.sent as u32);
        self.sent += 1;
        // A full socket refuses it: not sent.
        let sent = lamina_tender::sys::write_fd(device.host.as_raw_fd(), bytes);
        if sent.is_ok_and(|n| n == bytes.len()) && (1..=LARGEST).contains(&len) {
            device.expected.push_back(bytes[header..].to_vec());
        }
    }

    /// The guest takes up to `count` frames from device `d`'s queue.
    /// Its `head` is written back once, after the last take: a scribbled
    /// queue may hold a thousand records of garbage, and a store (and a
    /// note of it for the serve's check) after each was half of an
    /// execution.
    fn take(&mut self, d: usize, count: usize) {
        let device = &mut self.devices[d];
        let Some(queue) = self.queues.iter().find(|q| q.handle == device.handle) else {
            return;
        };
        let head_word = queue.descriptor + rx::field::HEAD as u64;
        let tail = load(&self.view, queue.descriptor + rx::field::TAIL as u64);
        let start = load(&self.view, head_word);
        let mut head = start;
        let mut took = false;
        let area = reserved(&self.view);
        for _ in 0..count {
            let taken = take(area, queue, tail, &mut head);
            took |= !matches!(taken, Taken::Empty);
            match taken {
                Taken::Empty => break,
                Taken::Dropped => assert!(!device.clean, "a clean queue held a bad record"),
                Taken::Frame(range) if device.clean => {
                    let frame = &area[range];
                    if device.exact {
                        let next = device.expected.pop_front();
                        assert_eq!(
                            Some(frame),
                            next.as_deref(),
                            "frames out of order or changed"
                        );
                    } else {
                        // Some may have been dropped, none reordered.
                        let at = device.expected.iter().position(|f| f == frame);
                        let at = at.expect("a frame not sent, or out of order");
                        device.expected.drain(..=at);
                    }
                }
                Taken::Frame(_) => {}
            }
        }
        if took {
            store(&self.view, head_word, head);
        }
    }

    /// The guest overwrites a word; `what` picks which.
    fn scribble(&mut self, what: u8, value: u32) {
        let q = usize::from(what / 16) % rx::MAX_QUEUES;
        let queue_of = |gpa: u64, devices: &mut [Device], queues: &[GuestQueue]| {
            for (device, queue) in devices.iter_mut().zip(queues) {
                let words = queue.descriptor + rx::field::TAIL as u64
                    ..queue.descriptor + rx::field::HEAD as u64 + 4;
                let bytes = queue.base..queue.base + u64::from(queue.size);
                if gpa + 4 > words.start && gpa < words.end
                    || gpa + 4 > bytes.start && gpa < bytes.end
                {
                    device.clean = false;
                }
            }
        };
        let gpa = match what % 16 {
            0 => descriptor(q, rx::field::HEAD),
            1 => descriptor(q, rx::field::TAIL),
            2 => descriptor(q, rx::field::STALLED),
            3 => descriptor(q, rx::field::SIZE),
            4 => descriptor(q, rx::field::OFFSET),
            5 => descriptor(q, rx::field::HANDLE),
            6 => RING + offsets::RX_ENABLE as u64,
            7 => RING + offsets::GUEST_WAITING as u64,
            8 => RING + offsets::ENT_TAIL as u64,
            9 => RING + offsets::COM_HEAD as u64,
            // A head near the tender's tail: a little behind, on it, ahead.
            10 | 11 => {
                let Some(device) = self.devices.get(q % 2) else {
                    return;
                };
                let head = device.tail.wrapping_sub(value as i16 as i32 as u32);
                let gpa = descriptor(q % 2, rx::field::HEAD);
                queue_of(gpa, &mut self.devices, &self.queues);
                store(&self.view, gpa, head);
                return;
            }
            // A word in a queue's bytes.
            12 | 13 => {
                let Some(queue) = self.queues.get(q % 2) else {
                    return;
                };
                queue.base + u64::from((value >> 8) & (queue.size - 1) & !3)
            }
            // Any word of the reserved area.
            _ => (RING + u64::from(value >> 8) % RESERVED_BYTES) & !3,
        };
        queue_of(gpa, &mut self.devices, &self.queues);
        store(&self.view, gpa, value);
    }

    /// The guest submits an entry to the ring.
    fn submit(&mut self, operation: u8, handle: u8, data: u16, len: u16) {
        let entry = RingEntry {
            operation: u32::from(operation % 4),
            handle: u32::from(handle % 4),
            data: u64::from(data),
            len: u32::from(len),
            ..Default::default()
        };
        if entry.operation == op::NET_READ {
            // It may take a frame from the tap before the queue does.
            for device in &mut self.devices {
                if device.handle == u64::from(entry.handle) {
                    device.exact = false;
                }
            }
        }
        let tail_gpa = RING + offsets::ENT_TAIL as u64;
        let tail = load(&self.view, tail_gpa);
        let at = RING + (offsets::ENTRIES + (tail & MASK) as usize * 32) as u64;
        self.view.reserved_write(at, &entry).expect("an entry slot");
        guest_wrote(at, std::mem::size_of::<RingEntry>());
        store(&self.view, tail_gpa, tail.wrapping_add(1));
    }

    /// Serves as the vCPU thread does in POLL; checks what it wrote and
    /// its verdict. `Err` once the guest is stopped.
    fn serve(&mut self) -> Result<bool, ()> {
        // The tender never reads a descriptor's `tail` (it keeps its own):
        // put back what a scribble changed, so that the word after the
        // serve tells what the tender published.
        for (device, queue) in self.devices.iter().zip(&self.queues) {
            store(
                &self.view,
                queue.descriptor + rx::field::TAIL as u64,
                device.tail,
            );
        }
        let enabled = load(&self.view, RING + offsets::RX_ENABLE as u64) != 0;
        let corrupt = enabled
            && self
                .devices
                .iter()
                .zip(&self.queues)
                .any(|(device, queue)| {
                    let head = load(&self.view, queue.descriptor + rx::field::HEAD as u64);
                    device.tail.wrapping_sub(head) > queue.size
                });
        let entries_pending = load(&self.view, RING + offsets::ENT_TAIL as u64)
            != load(&self.view, RING + offsets::ENT_HEAD as u64);
        let writable = writable(&self.view, &self.devices, &self.queues);
        // Past the queues, the pages are read-only instead of compared.
        let mut protected = protected(&writable);
        protected.retain_mut(|range| {
            range.1 = range.1.min(self.live);
            range.0 < range.1
        });
        // The mirror, brought up to date where the serve must not write:
        // the whole area at the first serve; then where the last serve
        // could write, and where the guest wrote since.
        let wrote = GUEST_WROTE.with_borrow_mut(std::mem::take);
        let area = reserved(&self.view);
        if self.mirror.is_empty() {
            self.mirror.extend_from_slice(&area[..self.live]);
        } else {
            let mut unknown = std::mem::take(&mut self.stale);
            unknown.extend(wrote);
            for (start, end) in intersect(&protected, &merged(unknown)) {
                self.mirror[start..end].copy_from_slice(&area[start..end]);
            }
        }

        let result = serve_for_poll(&self.view, RING, &self.nets, &self.shared);

        let area = reserved(&self.view);
        for &(start, end) in &protected {
            // Slices compared whole (memcmp), byte by byte only to report.
            let (before, after) = (&self.mirror[start..end], &area[start..end]);
            if before != after {
                let i = (0..end - start).find(|&i| before[i] != after[i]);
                let i = i.expect("a byte that differs");
                panic!(
                    "the serve wrote reserved byte {:#x} ({:#x} -> {:#x}), outside what it may write {writable:x?}",
                    start + i,
                    before[i],
                    after[i]
                );
            }
        }
        self.stale = writable;
        match result {
            Ok(queued) => {
                assert!(!corrupt, "a corrupt receive queue was served");
                for (device, queue) in self.devices.iter_mut().zip(&self.queues) {
                    device.tail = load(&self.view, queue.descriptor + rx::field::TAIL as u64);
                }
                Ok(queued)
            }
            Err(error) if error.contains("receive queue") => {
                assert!(corrupt, "a sound receive queue stopped the guest: {error}");
                assert!(error.contains("corrupt"), "{error}");
                Err(())
            }
            Err(error) => {
                assert!(entries_pending, "stopped with no entry submitted: {error}");
                assert!(error.contains("network ring"), "{error}");
                Err(())
            }
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut input = Input(bytes);
    let Some(flags) = input.byte() else {
        return;
    };
    let mut devices = Vec::new();
    let mut nets = Vec::new();
    for (handle, offload) in [(1u64, flags & 2 != 0), (2, flags & 4 != 0)]
        .into_iter()
        .take(if flags & 1 != 0 { 2 } else { 1 })
    {
        let (device, host) = lamina_usernet::socketpair().expect("socketpair");
        let mac = [2, 0, 0, 0, 0, handle as u8];
        nets.push(NetDevice::from_fd(
            "service", handle, device, mac, 1500, offload,
        ));
        devices.push(Device {
            handle,
            host,
            offload,
            expected: VecDeque::new(),
            exact: !offload,
            clean: true,
            tail: 0,
        });
    }
    GUEST_WROTE.with_borrow_mut(Vec::clear);
    let view = zeroed_memory();
    assert!(lamina_hvt::rx::lay_out(&view, RING, &nets).expect("laid out"));
    let queues = enable(&view);
    assert_eq!(queues.len(), devices.len(), "a queue per device");
    let live = live_end(&queues);
    LIVE.set(live);
    protect_past_live(&view, true);
    let mut harness = Harness {
        view,
        nets,
        devices,
        queues,
        live,
        shared: Shared::default(),
        mirror: MIRRORS.with_borrow_mut(|m| {
            let mut mirror = m.pop().unwrap_or_default();
            mirror.clear();
            mirror
        }),
        stale: Vec::new(),
        sent: 0,
        send_buffer: Vec::new(),
    };
    let count = harness.devices.len();

    while let Some(operation) = input.byte() {
        let stopped = match operation % 8 {
            0 => {
                let d = usize::from(input.u8()) % count;
                let len = usize::from(input.u16());
                harness.send(d, len);
                false
            }
            1 => {
                let d = usize::from(input.u8()) % count;
                let n = usize::from(input.u8() % 64) + 1;
                let len = usize::from(input.u16());
                for i in 0..n {
                    harness.send(d, len.saturating_sub(i % 64));
                }
                false
            }
            2 => {
                let what = input.u8();
                let value = input.u32();
                harness.scribble(what, value);
                false
            }
            3 => {
                let d = usize::from(input.u8()) % count;
                let n = usize::from(input.u8());
                harness.take(d, n);
                false
            }
            4 => {
                let (operation, handle) = (input.u8(), input.u8());
                let (data, len) = (input.u16(), input.u16());
                harness.submit(operation, handle, data, len);
                false
            }
            _ => harness.serve().is_err(),
        };
        if stopped {
            return;
        }
    }

    // The guest behaves: it takes frames as they come until the taps are
    // empty; every frame of a clean queue comes out.
    store(&harness.view, RING + offsets::RX_ENABLE as u64, 1);
    for _ in 0..harness.sent + 8 {
        let Ok(queued) = harness.serve() else {
            return;
        };
        for d in 0..count {
            // Bounded: a scribbled queue may never look empty.
            harness.take(d, MAX_FRAMES + 1);
        }
        // A scribbled queue may stay full: only clean ones' taps count.
        let pending = harness
            .nets
            .iter()
            .zip(&harness.devices)
            .any(|(net, device)| device.clean && tap_pending(net));
        if !queued && !pending {
            break;
        }
    }
    for device in &harness.devices {
        if device.clean && device.exact {
            assert!(
                device.expected.is_empty(),
                "{} frames sent were never taken",
                device.expected.len()
            );
        }
    }
});
