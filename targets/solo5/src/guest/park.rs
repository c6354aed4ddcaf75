//! The executor's idle wait: Solo5's `yield(deadline)`, and the wakers of
//! tasks waiting for network input.

use super::sys;
use core::cell::{Cell, RefCell};
use core::task::Waker;
use lamina_abi::mft::MAX_ENTRIES;
use lamina_core::runtime::{Instant, Park};

/// Shortest time between two non-blocking device checks that cost an exit
/// or a system call.
const CHECK_INTERVAL_NS: u64 = 50_000;
/// Longest the guest polls its receive queues before it sleeps in the
/// tender (hvt), as KVM's halt_poll_ns_max. Sleeping costs a VM exit and a
/// wake-up of the vCPU thread (100-300 µs a round on a nested KVM-PVM host).
/// Longer polls pay under saturation: with 200 µs, the website under
/// wrk -c50 served as many requests but its p99 latency was 3.9 ms
/// against 1.4 ms (a vCPU thread that polls long is later kept off its
/// CPU for whole scheduler slices while every connection waits); at one
/// request at a time they gained 14%, where there is time to spare.
const MAX_POLL_NS: u64 = 50_000;
/// The first poll after a short sleep.
const FIRST_POLL_NS: u64 = 20_000;
/// A sleep this short (exit and wake-up included) means polling would
/// probably have caught the input: poll longer next time.
const SHORT_SLEEP_NS: u64 = 500_000;
/// A deadline sooner than this (about what a sleep costs in exit and
/// wake-up alone) is waited for by polling.
const SLEEP_COST_NS: u64 = 100_000;
/// Longest the guest polls while the frames it queued wait for the
/// tender's I/O thread: a thread that has not taken them by then is not
/// running (a busy host), and the POLL that sleeping costs (an exit of
/// 50-70 µs) sends them from the vCPU's own thread.
const TAKE_WAIT_NS: u64 = 50_000;
/// Most parks in a row that sleep at once, without kicking and polling,
/// after the I/O thread was found slow to take frames.
const MAX_TAKE_SKIPS: u32 = 64;
/// A gap this long between two looks of a poll means the vCPU was off its
/// host CPU (the tender's threads' `DESCHEDULED` likewise).
const DESCHEDULED_NS: u64 = 50_000;

/// Blocks in the tender until a deadline or network input.
pub struct GuestPark {
    /// Waker of the task waiting on each device handle.
    waiters: RefCell<[Option<Waker>; MAX_ENTRIES as usize]>,
    /// Whether any network device was acquired: without one, nothing but
    /// time can wake the guest, and a zero-time check needs no exit.
    has_net: Cell<bool>,
    /// When the devices were last checked (monotonic ns).
    last_check: Cell<u64>,
    /// How long to poll before sleeping, adapted as KVM adapts its
    /// halt-polling: doubled when a poll caught input or input came soon
    /// after a sleep began, halved after a long sleep; an idle guest does
    /// not poll at all.
    poll_ns: Cell<u64>,
    /// After the I/O thread was slow to take frames: (parks left that
    /// sleep at once when it sleeps, the length of the last such run),
    /// doubled at each slow take, reset by a prompt one.
    taker_skips: Cell<(u32, u32)>,
}

impl GuestPark {
    pub fn new() -> Self {
        GuestPark {
            waiters: RefCell::new([const { None }; MAX_ENTRIES as usize]),
            has_net: Cell::new(false),
            last_check: Cell::new(0),
            poll_ns: Cell::new(0),
            taker_skips: Cell::new((0, 0)),
        }
    }

    /// Whether this park skips the kick and the poll (the I/O thread was
    /// slow to take frames lately); counts it.
    fn take_skip(&self) -> bool {
        let (left, run) = self.taker_skips.get();
        if left == 0 {
            return false;
        }
        self.taker_skips.set((left - 1, run));
        true
    }

    /// The I/O thread did not take the frames in time: skip the next
    /// kick-and-poll attempts, twice as many as last time.
    fn distrust(&self) {
        let (_, run) = self.taker_skips.get();
        let run = (run * 2).clamp(1, MAX_TAKE_SKIPS);
        self.taker_skips.set((run, run));
    }

    /// Runs the wakers of the devices in `ready`.
    fn wake(&self, ready: u64) {
        if ready == 0 {
            return;
        }
        let woken: alloc::vec::Vec<Waker> = {
            let mut waiters = self.waiters.borrow_mut();
            (0..waiters.len())
                .filter(|i| ready & (1 << i) != 0)
                .filter_map(|i| waiters[i].take())
                .collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Parks when the guest sees its input without an exit (hvt's receive
    /// queues): look, poll a while, then sleep in the tender.
    fn park_looking(&self, now: u64, deadline: Option<u64>) {
        let only_look = deadline.is_some_and(|d| d <= now);
        let mut ready = sys::ready_now().unwrap_or(0);
        if ready != 0 || only_look {
            sys::kick_if_pending();
            return self.wake(ready);
        }
        let poll = self.poll_ns.get();
        // A deadline sooner than a sleep's own cost is waited for here.
        let soon = deadline.is_some_and(|d| d - now < SLEEP_COST_NS);
        let unsent = sys::unsent();
        // The input polled for usually answers what the guest just sent.
        // If the thread that sends it sleeps and was slow to take frames
        // lately (a busy host), sleep at once: the POLL sends them.
        let distrusted = unsent.is_some_and(|u| u.taker_asleep) && self.take_skip();
        if (poll > 0 || soon) && !distrusted {
            sys::kick_if_pending();
            let until = deadline.map_or(now + poll, |d| if soon { d } else { d.min(now + poll) });
            let mut waiting = unsent.map(|u| (u.head, now));
            let mut last = now;
            let started = now;
            loop {
                ready = sys::ready_now().unwrap_or(0);
                if ready != 0 {
                    sys::note_poll(sys::monotonic_ns().saturating_sub(started), true);
                    // Caught: poll longer next time, up to the limit.
                    self.poll_ns
                        .set((poll * 2).clamp(FIRST_POLL_NS, MAX_POLL_NS));
                    return self.wake(ready);
                }
                let now = sys::monotonic_ns();
                if deadline.is_some_and(|d| now >= d) {
                    sys::note_poll(now.saturating_sub(started), false);
                    return;
                }
                if now >= until {
                    break;
                }
                if now - last > DESCHEDULED_NS {
                    // The vCPU was off its host CPU while polling: the
                    // host is busy, and polling takes a CPU from the
                    // threads that bring the input. Sleep now; the next
                    // poll is adapted as after any other.
                    break;
                }
                last = now;
                if let Some((head, since)) = waiting {
                    match sys::unsent() {
                        Some(u) if u.head == head => {
                            if now - since > TAKE_WAIT_NS {
                                // Nobody takes the frames: no answer can
                                // come. Sleep, and do so at once the next
                                // times (backing off exponentially).
                                self.distrust();
                                break;
                            }
                        }
                        Some(u) => waiting = Some((u.head, now)),
                        None => {
                            self.taker_skips.set((0, 0));
                            waiting = None;
                        }
                    }
                }
                core::hint::spin_loop();
            }
            sys::note_poll(sys::monotonic_ns().saturating_sub(started), false);
        }
        self.sleep(deadline, poll)
    }

    /// Sleeps in the tender until `deadline` or input, then adapts the
    /// poll that preceded it (`poll` ns).
    fn sleep(&self, deadline: Option<u64>, poll: u64) {
        let slept_from = sys::monotonic_ns();
        let ready = sys::wait(deadline);
        let slept = sys::monotonic_ns().saturating_sub(slept_from);
        // As KVM's halt-polling: input soon after the sleep began means a
        // longer poll would have caught it; a long sleep, or one that only
        // the deadline ended, halves the poll, so an idle guest soon polls
        // not at all.
        self.poll_ns.set(if ready != 0 && slept < SHORT_SLEEP_NS {
            (poll * 2).clamp(FIRST_POLL_NS, MAX_POLL_NS)
        } else if poll / 2 < FIRST_POLL_NS / 2 {
            0
        } else {
            poll / 2
        });
        self.wake(ready);
    }

    /// Registers `waker` to run when device `handle` has input.
    pub fn wait_for(&self, handle: u64, waker: &Waker) {
        self.has_net.set(true);
        if let Some(slot) = self.waiters.borrow_mut().get_mut(handle as usize) {
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }
}

impl Park for GuestPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(sys::monotonic_ns())
    }

    fn park(&self, deadline: Option<Instant>) {
        let now = sys::monotonic_ns();
        let deadline = deadline.map(Instant::as_nanos);
        if self.has_net.get() && sys::ready_now().is_some() {
            return self.park_looking(now, deadline);
        }
        let only_look = deadline.is_some_and(|d| d <= now);
        if only_look && !self.has_net.get() {
            return; // nothing to look at, and no time to wait
        }
        // Between rounds of busy tasks the executor asks to look at the
        // devices without waiting. Each look is a system call (spt) or a VM
        // exit (hvt), and the network driver reads its device directly when
        // it runs, so look at most every CHECK_INTERVAL_NS.
        if only_look && now.saturating_sub(self.last_check.get()) < CHECK_INTERVAL_NS {
            return;
        }
        self.last_check.set(now);
        // A guest that writes its own recording (spt) does it here, before
        // it may sleep: at most once per check interval while busy.
        lamina_metal::trace::drain();
        self.wake(sys::wait(deadline));
    }
}
