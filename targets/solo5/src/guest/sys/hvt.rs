//! The hvt ABI: every call is an `outl` of the guest-physical address of
//! its argument struct to the hypercall's port. Guest memory is
//! identity-mapped, so a pointer is its own guest-physical address.

use super::rx::{Dropped, Queues};
use super::{BootFacts, DeviceHandle, IoError, Unsent};
use core::arch::asm;
use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use lamina_abi::hvt::*;
use lamina_abi::ring::{self, offsets, op, ByteRing, Commit, GuestStats, RingEntry};
use lamina_abi::Solo5Result;
use lamina_metal::time::{TscClock, TscScale};

/// Monotonic time: the TSC from boot, at the frequency the tender reports.
static CLOCK: TscClock = TscClock::new();

/// The extensions the tender offered in the boot info (`HOST_FEATURE_*`).
static HOST_FEATURES: AtomicU32 = AtomicU32::new(0);

/// Guest address of the network ring, when the tender offers one.
static RING: spin::Once<usize> = spin::Once::new();
/// The receive queues, when the tender offers them with the ring.
static RX: spin::Once<Queues> = spin::Once::new();
/// The frames in flight through the ring: a byte ring of [`WRITE_BYTES`]
/// on the heap, taken at the first frame. Each frame is copied in whole
/// (wrapping to the start rather than splitting), at the position
/// [`WRITE_POS`] says; the bytes of entries from the tender's `ent_head`
/// on are in use (from `WRITE_STARTS` of that entry on).
static WRITE_BUFS: spin::Once<usize> = spin::Once::new();
/// Bytes of the write ring: as much as the 256 frames of 2 KiB it held
/// before large segments went through it, eight of the largest.
const WRITE_BYTES: u64 = 512 << 10;
/// Where frames go in it ([`ByteRing`]: whole, wrapping, never on bytes
/// still in flight).
const WRITE_RING: ByteRing = ByteRing::new(WRITE_BYTES);
/// The largest frame sent through the ring (larger ones, which no link
/// carries, go to the NetWrite hypercall and its error).
const MAX_RING_FRAME: usize = (WRITE_BYTES / 4) as usize;
/// Where the next frame goes in the write ring: a position that only
/// grows, taken modulo [`WRITE_BYTES`].
static WRITE_POS: AtomicU64 = AtomicU64::new(0);
/// Where the frame of entry `i` starts in the write ring, at `i %
/// WRITE_SLOTS` (an entry without one, a read, records the position then).
static WRITE_STARTS: [AtomicU64; WRITE_SLOTS as usize] =
    [const { AtomicU64::new(0) }; WRITE_SLOTS as usize];
/// Entries in flight at most (a power of two, at most `ring::SIZE`).
const WRITE_SLOTS: u32 = 256;

#[inline(always)]
fn hypercall<T>(call: Hypercall, arg: &mut T) {
    let gpa = arg as *mut T as usize;
    // SAFETY: `outl` hands the tender the address of `arg`, which lives on
    // the stack below 4 GiB (guest memory is at most 4 GiB) and is valid for
    // the whole call; the tender writes only `arg`'s OUT fields before the
    // instruction completes. The asm is not `nomem`, so the compiler neither
    // caches `arg` across it nor drops the writes before it.
    unsafe {
        asm!("out dx, eax", in("dx") call.port(), in("eax") gpa as u32, options(nostack, preserves_flags))
    };
}

/// Reads the tender's boot info.
///
/// # Safety
/// `boot_info` must be the pointer the tender passed in `%rdi`.
pub unsafe fn read_boot_info(boot_info: usize) -> BootFacts {
    // SAFETY: the caller passes the tender's pointer to a BootInfo.
    let info = unsafe { core::ptr::read_volatile(boot_info as *const BootInfo) };
    HOST_FEATURES.store(info.host_features, Ordering::Relaxed);
    let scale = TscScale::new(info.cpu_cycle_freq);
    CLOCK.start(scale.unwrap_or(TscScale::new(1_000_000_000).expect("1 GHz is valid")));
    // The ring lies at the top of memory, above `mem_size` (so outside the
    // heap and stack); a tender without it leaves both fields 0.
    if info.host_features & HOST_FEATURE_RING_IO != 0
        && info.net_ring != 0
        && info.net_ring >= info.mem_size
        && info.net_ring.is_multiple_of(64)
    {
        let ring = *RING.call_once(|| info.net_ring as usize);
        if info.host_features & HOST_FEATURE_RX_QUEUES != 0 {
            // SAFETY: the tender offered the queues in this ring, which is
            // reserved, identity-mapped and 64-byte aligned (checked above).
            RX.call_once(|| unsafe { Queues::enable(ring) });
        }
    }
    if info.host_features & HOST_FEATURE_BLOCK_RING != 0
        && info.block_ring != 0
        && info.block_ring >= info.mem_size
        && info.block_ring.is_multiple_of(64)
    {
        // SAFETY: the tender reserved the ring above `mem_size` (so
        // outside the heap and stack), identity-mapped and 64-byte aligned
        // (checked above).
        unsafe { super::block_ring::enable(info.block_ring as usize) };
    }
    BootFacts {
        mem_size: info.mem_size,
        kernel_end: info.kernel_end,
        cmdline: info.cmdline as usize,
        mft: info.mft as usize,
        tsc_valid: scale.is_some(),
    }
}

/// Writes to the console in one hypercall.
pub fn console_write(bytes: &[u8]) {
    let mut arg = HcPuts {
        data: bytes.as_ptr() as u64,
        len: bytes.len() as u64,
    };
    hypercall(Hypercall::Puts, &mut arg);
}

/// Nanoseconds since boot, from the TSC.
pub fn monotonic_ns() -> u64 {
    CLOCK.now_ns()
}

/// Wall-clock nanoseconds since the epoch, from the tender.
pub fn wall_ns() -> u64 {
    let mut arg = HcWalltime::default();
    hypercall(Hypercall::Walltime, &mut arg);
    arg.nsecs
}

/// The set of devices with input, when the tender lets the guest see it
/// without an exit (the receive queues); `None` when only [`wait`] can.
pub fn ready_now() -> Option<u64> {
    RX.get().map(Queues::ready)
}

/// Blocks until a network device has input or `deadline` (monotonic ns) passes;
/// returns the set of ready device handles. `None` waits without deadline.
pub fn wait(deadline: Option<u64>) -> u64 {
    if let Some(queues) = RX.get() {
        let ready = queues.about_to_wait();
        if ready != 0 {
            return ready;
        }
        let slept_from = monotonic_ns();
        poll(deadline);
        note_sleep(monotonic_ns().saturating_sub(slept_from));
        queues.done_waiting();
        return queues.ready();
    }
    poll(deadline)
}

/// Adds a poll of the receive queues before sleeping, `ns` long, that
/// found input or not, to the ring's [`GuestStats`] (`--x-stats`).
pub fn note_poll(ns: u64, caught: bool) {
    let Some(&base) = RING.get() else { return };
    add_stat(base, offset_of!(GuestStats, poll_ns), ns);
    add_stat(base, offset_of!(GuestStats, polls), 1);
    if caught {
        add_stat(base, offset_of!(GuestStats, polls_caught), 1);
    }
}

/// Adds a sleep in POLL, `ns` long, to the ring's [`GuestStats`].
fn note_sleep(ns: u64) {
    let Some(&base) = RING.get() else { return };
    add_stat(base, offset_of!(GuestStats, sleep_ns), ns);
    add_stat(base, offset_of!(GuestStats, sleeps), 1);
}

/// Adds `n` to the [`GuestStats`] field at `field` of the ring at `base`.
fn add_stat(base: usize, field: usize, n: u64) {
    // SAFETY: the tender reserved the ring at `base` (64-byte aligned,
    // identity-mapped, outside the heap and stack) for the guest's
    // lifetime; GUEST_STATS is 64-byte aligned and its fields are u64s;
    // only the guest writes them, the tender reads them after it stopped.
    let word = unsafe { &*((base + offsets::GUEST_STATS + field) as *const AtomicU64) };
    word.store(
        word.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// The POLL hypercall: the ready set (empty with the receive queues).
fn poll(deadline: Option<u64>) -> u64 {
    // A day: long enough to mean "no deadline", short enough for any timerfd.
    const FOREVER: u64 = 86_400 * 1_000_000_000;
    let timeout = match deadline {
        Some(d) => d.saturating_sub(monotonic_ns()),
        None => FOREVER,
    };
    let mut arg = HcPoll {
        timeout_nsecs: timeout,
        ..Default::default()
    };
    hypercall(Hypercall::Poll, &mut arg);
    arg.ready_set
}

/// Hands the tender the trace ring to drain while the guest runs and at
/// its end, if it offered to ([`HOST_FEATURE_TRACE`]: its `--trace`);
/// false otherwise, and the call is not made (Solo5's tenders do not know
/// it).
pub fn trace_register(ring: &'static [core::sync::atomic::AtomicU64]) -> bool {
    if HOST_FEATURES.load(Ordering::Relaxed) & HOST_FEATURE_TRACE == 0 {
        return false;
    }
    let mut arg = HcTraceRegister {
        ring: ring.as_ptr() as u64,
        words: ring.len() as u64,
        guest_ns: monotonic_ns(),
        ..Default::default()
    };
    hypercall(Hypercall::TraceRegister, &mut arg);
    arg.ret == Solo5Result::Ok as i32
}

/// The tender drains the ring: the guest writes no recording itself.
pub fn trace_sink() -> Option<fn(&[u8])> {
    None
}

/// The guest's clock runs from its boot; the tender relates it to its own
/// when the ring is registered.
pub fn clock_offset_ns() -> i64 {
    0
}

/// Stops the guest with `status` (after the tender has taken the frames
/// still in the ring).
pub fn halt(status: i32) -> ! {
    if let Some(&base) = RING.get() {
        drain(base);
    }
    let mut arg = HcHalt {
        cookie: 0,
        exit_status: status,
        _pad: 0,
    };
    loop {
        hypercall(Hypercall::Halt, &mut arg);
    }
}

fn result(ret: i32) -> Result<(), IoError> {
    match Solo5Result::from_raw(ret) {
        Solo5Result::Ok => Ok(()),
        Solo5Result::Again => Err(IoError::Again),
        _ => Err(IoError::Failed),
    }
}

/// Reads `buf.len()` bytes of a block device at byte `offset`.
pub fn block_read(device: DeviceHandle, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
    let mut arg = HcBlockRead {
        handle: device.index,
        offset,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::BlockRead, &mut arg);
    result(arg.ret)
}

/// Writes `buf` to a block device at byte `offset`.
pub fn block_write(device: DeviceHandle, offset: u64, buf: &[u8]) -> Result<(), IoError> {
    let mut arg = HcBlockWrite {
        handle: device.index,
        offset,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::BlockWrite, &mut arg);
    result(arg.ret)
}

/// Makes the writes completed on a block device durable (the tender's
/// `fdatasync(2)`).
pub fn block_flush(device: DeviceHandle) -> Result<(), IoError> {
    let mut arg = HcBlockFlush {
        handle: device.index,
        ..Default::default()
    };
    hypercall(Hypercall::BlockFlush, &mut arg);
    result(arg.ret)
}

/// Has the tender serve the block ring on the vCPU's own thread: every
/// request submitted so far is answered when this returns. How many the
/// vCPU's thread answered itself (0: the I/O thread had them all).
pub fn block_ring_serve() -> u64 {
    let mut arg = HcBlockRingServe::default();
    hypercall(Hypercall::BlockRingServe, &mut arg);
    arg.served
}

/// An index word of the ring at `base`.
fn index(base: usize, offset: usize) -> &'static AtomicU32 {
    // SAFETY: the tender reserved the ring at `base` (64-byte aligned,
    // identity-mapped, outside the heap and stack) for the guest's lifetime;
    // both sides access its index words only atomically.
    unsafe { &*((base + offset) as *const AtomicU32) }
}

/// Tells the tender's I/O thread that entries wait: an `out` that KVM turns
/// into an eventfd signal without leaving the kernel.
fn kick() {
    // SAFETY: an `out` to the kick port reads and writes no guest memory
    // (not `nomem`: it must stay after the fence and the ent_tail store).
    unsafe {
        asm!("out dx, eax", in("dx") ring::KICK_PORT, in("eax") 0u32, options(nostack, preserves_flags))
    };
}

/// Submits `entry` (its `data` filled by `fill` once the slot is free) and
/// returns its index. Kicks the tender only when its I/O thread sleeps,
/// and with the receive queues only when the ring is full: then the guest
/// kicks once per round of its executor ([`kick_if_pending`]), or not at
/// all when it goes to sleep, as the tender serves the ring in POLL.
fn submit(base: usize, mut entry: RingEntry, fill: impl FnOnce(u32) -> u64) -> u32 {
    let ent_tail = index(base, offsets::ENT_TAIL);
    let ent_head = index(base, offsets::ENT_HEAD);
    let tail = ent_tail.load(Ordering::Relaxed);
    // Room.
    while tail.wrapping_sub(ent_head.load(Ordering::Acquire)) >= WRITE_SLOTS {
        kick_if_asleep(base);
        core::hint::spin_loop();
    }
    WRITE_STARTS[(tail % WRITE_SLOTS) as usize]
        .store(WRITE_POS.load(Ordering::Relaxed), Ordering::Relaxed);
    entry.data = fill(tail);
    entry.id = tail;
    let slot = base + offsets::ENTRIES + (tail & ring::MASK) as usize * size_of::<RingEntry>();
    // SAFETY: the slot is inside the ring and not the tender's until
    // ent_tail passes it (the Release store below publishes it).
    unsafe { core::ptr::write_volatile(slot as *mut RingEntry, entry) };
    ent_tail.store(tail.wrapping_add(1), Ordering::Release);
    if RX.get().is_none() {
        // Store ent_tail, then read needs_kick; the tender sets needs_kick,
        // then reads ent_tail: with a full fence on both sides one sees the
        // other.
        fence(Ordering::SeqCst);
        kick_if_asleep(base);
    }
    tail
}

/// Kicks the tender's I/O thread if it has gone to sleep, once: the
/// guest clears `needs_kick` itself, so that until the thread runs again
/// (which on a busy host can take a while) no further kick, each an exit
/// served in the host kernel, is spent on it.
pub(super) fn kick_if_asleep(base: usize) {
    let needs_kick = index(base, offsets::NEEDS_KICK);
    if needs_kick.load(Ordering::Relaxed) != 0 && needs_kick.swap(0, Ordering::SeqCst) != 0 {
        kick();
    }
}

/// Wakes the tender's I/O thread if it sleeps while entries wait: at the
/// end of a round of the executor that goes on running (or polling), so
/// that a round's frames leave together with at most one kick.
pub fn kick_if_pending() {
    let Some(&base) = RING.get() else { return };
    let ent_tail = index(base, offsets::ENT_TAIL).load(Ordering::Relaxed);
    fence(Ordering::SeqCst);
    if index(base, offsets::ENT_HEAD).load(Ordering::Relaxed) != ent_tail {
        kick_if_asleep(base);
    }
}

/// The entries waiting in the ring, if any.
pub fn unsent() -> Option<Unsent> {
    let &base = RING.get()?;
    let head = index(base, offsets::ENT_HEAD).load(Ordering::Acquire);
    if index(base, offsets::ENT_TAIL).load(Ordering::Relaxed) == head {
        return None;
    }
    Some(Unsent {
        head,
        taker_asleep: index(base, offsets::NEEDS_KICK).load(Ordering::Relaxed) != 0,
    })
}

/// Waits until the tender has taken every entry (so that a frame sent by
/// hypercall does not overtake frames in the ring).
fn drain(base: usize) {
    let ent_tail = index(base, offsets::ENT_TAIL).load(Ordering::Relaxed);
    let ent_head = index(base, offsets::ENT_HEAD);
    while ent_head.load(Ordering::Acquire) != ent_tail {
        kick_if_asleep(base);
        core::hint::spin_loop();
    }
}

/// Each device's `write_errors_by_handle` word as [`ring_write`] last saw
/// it, by handle.
static WRITE_ERRORS_SEEN: [AtomicU32; ring::MAX_HANDLES] =
    [const { AtomicU32::new(0) }; ring::MAX_HANDLES];

/// Sends `frame` through the ring: copied into the entry's buffer, no exit.
/// The ring answers no write, so a failure the tender counted on this
/// device since the last call (of an earlier frame of this device, or
/// this one if already served) is this call's error: the same
/// SOLO5_R_EUNSPEC the hypercall gives at once.
fn ring_write(base: usize, device: DeviceHandle, frame: &[u8]) -> Result<(), IoError> {
    let bufs = *WRITE_BUFS.call_once(|| {
        let bufs = alloc::vec![0u8; WRITE_BYTES as usize];
        alloc::boxed::Box::leak(bufs.into_boxed_slice()).as_mut_ptr() as usize
    });
    // The frame whole (its length is at most MAX_RING_FRAME, and the
    // position, counting bytes sent, cannot come near u64::MAX).
    let Some((start, end)) =
        WRITE_RING.place(WRITE_POS.load(Ordering::Relaxed), frame.len() as u64)
    else {
        return Err(IoError::Failed);
    };
    // Wait for the bytes: those of entries the tender has not finished
    // (from `ent_head` on) stay.
    let ent_tail = index(base, offsets::ENT_TAIL);
    let ent_head = index(base, offsets::ENT_HEAD);
    loop {
        let head = ent_head.load(Ordering::Acquire);
        let in_use = WRITE_STARTS[(head % WRITE_SLOTS) as usize].load(Ordering::Relaxed);
        if head == ent_tail.load(Ordering::Relaxed) || WRITE_RING.free_up_to(in_use, end) {
            break;
        }
        kick_if_asleep(base);
        core::hint::spin_loop();
    }
    WRITE_POS.store(start, Ordering::Relaxed);
    let entry = RingEntry {
        operation: op::NET_WRITE,
        handle: device.index as u32,
        len: frame.len() as u32,
        ..Default::default()
    };
    submit(base, entry, |_| {
        let buf = bufs + WRITE_RING.offset(start) as usize;
        // SAFETY: `[buf, buf + len)` is inside the leaked heap buffer
        // (the frame fits before its end, above) and free: the entries
        // whose frames were there are behind the tender's `ent_head`.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), buf as *mut u8, frame.len()) };
        buf as u64
    });
    WRITE_POS.store(end, Ordering::Relaxed);
    let handle = device.index as usize;
    let Some(seen) = WRITE_ERRORS_SEEN.get(handle) else {
        // No word for this handle (none is that large): nothing to tell.
        return Ok(());
    };
    let at = offsets::WRITE_ERRORS_BY_HANDLE + 4 * handle;
    let errors = index(base, at).load(Ordering::Acquire);
    if seen.swap(errors, Ordering::Relaxed) != errors {
        return Err(IoError::Failed);
    }
    Ok(())
}

/// Receives through the ring: one NET_READ entry, then its commit.
fn ring_read(base: usize, device: DeviceHandle, buf: &mut [u8]) -> Result<Option<usize>, IoError> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    let entry = RingEntry {
        operation: op::NET_READ,
        handle: device.index as u32,
        len,
        ..Default::default()
    };
    let data = buf.as_mut_ptr() as u64;
    submit(base, entry, |_| data);
    let com_head = index(base, offsets::COM_HEAD);
    let com_tail = index(base, offsets::COM_TAIL);
    let head = com_head.load(Ordering::Relaxed);
    // Reads are synchronous: this commit is the next one.
    while com_tail.load(Ordering::Acquire) == head {
        core::hint::spin_loop();
    }
    let slot = base + offsets::COMMITS + (head & ring::MASK) as usize * size_of::<Commit>();
    // SAFETY: the tender published this commit (Acquire above) and does
    // not touch it again until com_head passes it.
    let commit = unsafe { core::ptr::read_volatile(slot as *const Commit) };
    com_head.store(head.wrapping_add(1), Ordering::Release);
    match result(commit.ret) {
        Ok(()) => Ok(Some((commit.len as usize).min(buf.len()))),
        Err(IoError::Again) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the tender moves the frames of `device` on a thread of its own
/// while the guest runs: with Lamina's tender, which fills its receive
/// queue and sends from the ring (not with Solo5's hypercalls).
pub fn net_in_background(device: DeviceHandle) -> bool {
    RX.get().is_some_and(|queues| queues.serves(device.index))
}

/// Receives a frame if one is waiting.
pub fn net_read(device: DeviceHandle, buf: &mut [u8]) -> Result<Option<usize>, IoError> {
    if let Some(queues) = RX.get().filter(|q| q.serves(device.index)) {
        return queues
            .take(device.index, buf)
            .map_err(|Dropped| IoError::Failed);
    }
    if let Some(&base) = RING.get() {
        return ring_read(base, device, buf);
    }
    let mut arg = HcNetRead {
        handle: device.index,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::NetRead, &mut arg);
    match result(arg.ret) {
        Ok(()) => Ok(Some((arg.len as usize).min(buf.len()))),
        Err(IoError::Again) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Receives a frame behind the virtio-net header of a link that has one
/// (the tender passes the tap's bytes as they are): the header into
/// `header`, the frame into `buf`; the frame's length, or `None`.
pub fn net_read_with_header(
    device: DeviceHandle,
    header: &mut [u8],
    buf: &mut [u8],
) -> Result<Option<usize>, IoError> {
    if let Some(queues) = RX.get().filter(|q| q.serves(device.index)) {
        return queues
            .take_split(device.index, header, buf)
            .map_err(|Dropped| IoError::Failed);
    }
    // A tender that offers no receive queues: the whole, then split.
    let mut whole = alloc::vec![0u8; header.len() + buf.len()];
    match net_read(device, &mut whole)? {
        Some(n) if n >= header.len() => {
            let (head, frame) = whole[..n].split_at(header.len());
            header.copy_from_slice(head);
            buf[..frame.len()].copy_from_slice(frame);
            Ok(Some(frame.len()))
        }
        Some(_) => Err(IoError::Failed),
        None => Ok(None),
    }
}

/// Sends a frame: through the ring when the tender offers one and the
/// frame fits the ring's write buffer (every frame a link carries does),
/// else by hypercall.
pub fn net_write(device: DeviceHandle, frame: &[u8]) -> Result<(), IoError> {
    if let Some(&base) = RING.get() {
        if frame.len() <= MAX_RING_FRAME {
            return ring_write(base, device, frame);
        }
        drain(base);
    }
    let mut arg = HcNetWrite {
        handle: device.index,
        data: frame.as_ptr() as u64,
        len: frame.len() as u64,
        ..Default::default()
    };
    hypercall(Hypercall::NetWrite, &mut arg);
    result(arg.ret)
}
