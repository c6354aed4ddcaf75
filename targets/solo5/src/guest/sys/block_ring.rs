//! The guest's side of the hvt block ring ([`lamina_abi::block_ring`]):
//! requests queued in shared memory, completions taken with plain loads,
//! a kick (an exit served in the host kernel) only while the tender's
//! block I/O thread sleeps. A request not answered within a look
//! ([`look_ns`]: the I/O thread descheduled on a busy host, or a slow
//! disk) is served on the vCPU's own thread through the `BlockRingServe`
//! hypercall; the look grows while such exits find the I/O thread in the
//! middle of the request ([`crate::look`]).
//!
//! Several requests may be in flight at once, from one transfer (split in
//! [`MAX_TRANSFER`](lamina_abi::mft::block_features::MAX_TRANSFER) pieces)
//! or from several tasks: each is a ticket (its request index) whose slot
//! holds its state until its owner takes the result.

use super::IoError;
use crate::look::LookBounds;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use lamina_abi::block_ring::{self, offsets, Completion, Request};
use lamina_abi::Solo5Result;

/// The ring, when the tender offers one.
static RING: spin::Once<BlockRing> = spin::Once::new();

/// A request in flight: its index in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u32);

/// What became of each request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Free for the next request with this slot.
    Free,
    /// Submitted, not answered yet.
    InFlight,
    /// Answered with this status; not yet taken by its owner.
    Done(i32),
}

/// The ring at `base` and the state of its slots.
struct BlockRing {
    base: usize,
    slots: spin::Mutex<[Slot; block_ring::SIZE as usize]>,
}

/// Uses the ring the tender offered at `base` (from the boot info).
///
/// # Safety
/// `base` must be the tender's block ring: reserved for the guest's
/// lifetime, identity-mapped, 64-byte aligned, outside the heap and stack.
pub unsafe fn enable(base: usize) {
    RING.call_once(|| BlockRing {
        base,
        slots: spin::Mutex::new([Slot::Free; block_ring::SIZE as usize]),
    });
}

/// Whether the tender offered the ring.
pub fn available() -> bool {
    RING.get().is_some()
}

impl BlockRing {
    /// An index word.
    fn index(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `enable`'s contract: the ring is reserved and mapped for
        // the guest's lifetime and 64-byte aligned; both sides access its
        // index words only atomically.
        unsafe { &*((self.base + offset) as *const AtomicU32) }
    }

    /// Moves the completions the tender posted into their slots.
    fn reap(&self, slots: &mut [Slot; block_ring::SIZE as usize]) {
        let com_head = self.index(offsets::COM_HEAD);
        let com_tail = self.index(offsets::COM_TAIL).load(Ordering::Acquire);
        let mut head = com_head.load(Ordering::Relaxed);
        while head != com_tail {
            let at = block_ring::completion_at(self.base as u64, head) as usize;
            // SAFETY: inside the ring; the tender published this completion
            // (Acquire above) and leaves it until com_head passes it.
            let completion = unsafe { core::ptr::read_volatile(at as *const Completion) };
            let slot = &mut slots[(completion.id & block_ring::MASK) as usize];
            if *slot == Slot::InFlight {
                *slot = Slot::Done(completion.status);
            }
            head = head.wrapping_add(1);
        }
        com_head.store(head, Ordering::Release);
    }

    /// Kicks the tender's thread if it sleeps, once (the guest clears
    /// `needs_kick`, so that no second kick is spent before the thread
    /// runs).
    fn kick_if_asleep(&self) {
        let needs_kick = self.index(offsets::NEEDS_KICK);
        if needs_kick.load(Ordering::Relaxed) != 0 && needs_kick.swap(0, Ordering::SeqCst) != 0 {
            // SAFETY: an `out` to the kick port reads and writes no guest
            // memory (not `nomem`: it must stay after the stores before).
            unsafe {
                core::arch::asm!("out dx, eax", in("dx") block_ring::KICK_PORT, in("eax") 0u32,
                    options(nostack, preserves_flags))
            };
        }
    }
}

/// Queues `request` (its `id` is set here); `None` when the ring is full
/// (retry once a ticket has been taken).
///
/// The request's buffer must stay valid, and not be otherwise accessed,
/// until its ticket is taken by [`take`] or [`wait`].
pub fn submit(request: Request) -> Option<Ticket> {
    submit_then(request, true)
}

/// Queues `request` as [`submit`] does, but never kicks the tender's
/// thread: for a request the guest has served on its own thread at once
/// ([`serve_now`]), one it knows takes longer than [`LOOK_NS`] (a flush).
/// Waking the thread would cost a kick, and its lock would only make the
/// vCPU's serving wait for the scheduler to run it.
pub fn submit_quietly(request: Request) -> Option<Ticket> {
    submit_then(request, false)
}

fn submit_then(mut request: Request, kick: bool) -> Option<Ticket> {
    let ring = RING.get()?;
    let mut slots = ring.slots.lock();
    ring.reap(&mut slots);
    let sub_tail = ring.index(offsets::SUB_TAIL);
    let tail = sub_tail.load(Ordering::Relaxed);
    // Free means the request SIZE before this one was answered and taken,
    // so its request and completion slots are the guest's again.
    let slot = &mut slots[(tail & block_ring::MASK) as usize];
    if *slot != Slot::Free {
        return None;
    }
    *slot = Slot::InFlight;
    request.id = tail;
    let at = block_ring::request_at(ring.base as u64, tail) as usize;
    // SAFETY: inside the ring, and not the tender's until sub_tail passes
    // it (the Release store below publishes it).
    unsafe { core::ptr::write_volatile(at as *mut Request, request) };
    sub_tail.store(tail.wrapping_add(1), Ordering::Release);
    // Store sub_tail, then read needs_kick; the tender sets needs_kick,
    // then reads sub_tail: with a full fence on both sides one sees the
    // other.
    fence(Ordering::SeqCst);
    if kick {
        ring.kick_if_asleep();
    }
    Some(Ticket(tail))
}

/// Whether the tender's block I/O thread is awake (looking for requests,
/// or serving some): a request submitted now is served without a kick.
pub fn thread_awake() -> bool {
    RING.get()
        .is_some_and(|ring| ring.index(offsets::NEEDS_KICK).load(Ordering::SeqCst) == 0)
}

/// The result of `ticket` if it has been answered (the ticket is then
/// spent).
pub fn take(ticket: Ticket) -> Option<Result<(), IoError>> {
    let ring = RING.get()?;
    let mut slots = ring.slots.lock();
    ring.reap(&mut slots);
    let slot = &mut slots[(ticket.0 & block_ring::MASK) as usize];
    match *slot {
        Slot::Done(status) => {
            *slot = Slot::Free;
            Some(match Solo5Result::from_raw(status) {
                Solo5Result::Ok => Ok(()),
                _ => Err(IoError::Failed),
            })
        }
        _ => None,
    }
}

/// How long a guest waits for an answer by looking, at least, before it
/// asks the tender to serve the ring on the vCPU's thread (an exit, 50-70
/// µs on KVM-PVM): an answer from an awake I/O thread takes a few µs, and
/// on a busy host that thread may be waiting for this very CPU. About
/// what the exit costs, as a rent-or-buy wait should be: at 30 µs most
/// exits came too soon (the I/O thread, back from a short preemption, had
/// answered by the time the exit reached the tender, or was in the middle
/// of the request, whose lock the vCPU's thread then waited for).
pub const LOOK_NS: u64 = 60_000;

/// The shortest look for a flush that the tender's awake I/O thread
/// serves: an `fdatasync` takes tens of µs on a fast device, and a look
/// saves the exit whenever it ends in time.
pub const FLUSH_LOOK_NS: u64 = 100_000;

/// The longest look: past it, a request that takes that long (a flush on
/// a slow disk) lets the vCPU sleep on the ring's lock through an exit
/// rather than hold a CPU.
pub const MAX_LOOK_NS: u64 = 800_000;

/// What a waiter waits for, each with a look of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Reads and writes.
    Transfer,
    /// Requests ending with a flush.
    Flush,
}

/// The current look of each [`Look`], learnt from what the exits after
/// a look found ([`serve_after_look`]).
static LOOKS: [AtomicU64; 2] = [AtomicU64::new(LOOK_NS), AtomicU64::new(FLUSH_LOOK_NS)];

impl Look {
    fn bounds(self) -> LookBounds {
        let shortest = match self {
            Look::Transfer => LOOK_NS,
            Look::Flush => FLUSH_LOOK_NS,
        };
        LookBounds {
            shortest,
            longest: MAX_LOOK_NS,
        }
    }

    fn current(self) -> &'static AtomicU64 {
        &LOOKS[self as usize]
    }

    /// Replaces the current look by what `next` makes of it within the
    /// bounds.
    fn adapt(self, next: impl FnOnce(LookBounds, u64) -> u64) {
        let current = self.current();
        current.store(
            next(self.bounds(), current.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
}

/// How long a waiter for `look` looks before [`serve_after_look`].
pub fn look_ns(look: Look) -> u64 {
    look.current().load(Ordering::Relaxed)
}

/// Has the tender answer every request submitted so far, on the vCPU's
/// own thread (one exit): for requests it was never asked to serve.
pub fn serve_now() {
    super::block_ring_serve();
}

/// [`serve_now`] for a waiter whose look ran out; the next look follows
/// from what the exit found ([`LookBounds::after_exit`]: longer if the
/// I/O thread was in the middle of the request, the shortest if it had not
/// picked it up).
pub fn serve_after_look(look: Look) {
    let served = super::block_ring_serve();
    look.adapt(|bounds, current| bounds.after_exit(current, served));
}

/// Notes that a waiter for `look` had its answers after `waited_ns` of
/// looking, without an exit ([`LookBounds::after_answer`]).
pub fn answered_after(look: Look, waited_ns: u64) {
    look.adapt(|bounds, current| bounds.after_answer(current, waited_ns));
}

/// Waits for `ticket` without yielding to other tasks: for a request
/// whose owner is going away (its buffer must outlive the request). The
/// tender's thread is awake or kicked while a request is in flight.
pub fn wait(ticket: Ticket) -> Result<(), IoError> {
    let mut since = super::monotonic_ns();
    loop {
        // The clock before the look: time off the CPU after it is no wait.
        let now = super::monotonic_ns();
        if let Some(result) = take(ticket) {
            return result;
        }
        if now.saturating_sub(since) > look_ns(Look::Transfer) {
            serve_after_look(Look::Transfer);
            since = now;
        }
        core::hint::spin_loop();
    }
}
