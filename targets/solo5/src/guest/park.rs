//! The executor's idle wait: Solo5's `yield(deadline)`, and the wakers of
//! tasks waiting for network input.

use super::sys;
use core::cell::{Cell, RefCell};
use core::task::Waker;
use lamina_abi::mft::MAX_ENTRIES;
use lamina_core::runtime::{Instant, Park};

/// Blocks in the tender until a deadline or network input.
pub struct GuestPark {
    /// Waker of the task waiting on each device handle.
    waiters: RefCell<[Option<Waker>; MAX_ENTRIES as usize]>,
    /// Whether any network device was acquired: without one, nothing but
    /// time can wake the guest, and a zero-time check needs no exit.
    has_net: Cell<bool>,
}

impl GuestPark {
    pub fn new() -> Self {
        GuestPark {
            waiters: RefCell::new([const { None }; MAX_ENTRIES as usize]),
            has_net: Cell::new(false),
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
        if !self.has_net.get() && deadline.is_some_and(|d| d <= now) {
            return; // nothing to look at, and no time to wait
        }
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
