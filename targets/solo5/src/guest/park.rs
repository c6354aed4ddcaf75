//! The executor's idle wait: Solo5's `yield(deadline)`, and the wakers of
//! tasks waiting for network input.

use super::sys;
use core::cell::{Cell, RefCell};
use core::task::Waker;
use lamina_abi::mft::MAX_ENTRIES;
use lamina_core::runtime::{Instant, Park};

/// Shortest time between two non-blocking device checks.
const CHECK_INTERVAL_NS: u64 = 50_000;

/// Blocks in the tender until a deadline or network input.
pub struct GuestPark {
    /// Waker of the task waiting on each device handle.
    waiters: RefCell<[Option<Waker>; MAX_ENTRIES as usize]>,
    /// Whether any network device was acquired: without one, nothing but
    /// time can wake the guest, and a zero-time check needs no exit.
    has_net: Cell<bool>,
    /// When the devices were last checked (monotonic ns).
    last_check: Cell<u64>,
}

impl GuestPark {
    pub fn new() -> Self {
        GuestPark {
            waiters: RefCell::new([const { None }; MAX_ENTRIES as usize]),
            has_net: Cell::new(false),
            last_check: Cell::new(0),
        }
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
        let ready = sys::wait(deadline);
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
}
