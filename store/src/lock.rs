//! A single-threaded async lock: one operation on the store at a time, each
//! holding the state across its device waits, others waiting their turn.

use alloc::collections::VecDeque;
use core::cell::{Cell, RefCell, RefMut};
use core::future::poll_fn;
use core::ops::{Deref, DerefMut};
use core::task::{Poll, Waker};

/// Owns a `T` that one task at a time may use, across awaits.
pub struct Lock<T> {
    held: Cell<bool>,
    waiters: RefCell<VecDeque<Waker>>,
    value: RefCell<T>,
}

/// Access to the locked value; dropping it lets the next task in.
pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
    value: Option<RefMut<'a, T>>,
}

impl<T> Lock<T> {
    /// A lock around `value`.
    pub fn new(value: T) -> Self {
        Lock {
            held: Cell::new(false),
            waiters: RefCell::new(VecDeque::new()),
            value: RefCell::new(value),
        }
    }

    /// Waits until no other task holds the lock, then takes it.
    pub async fn lock(&self) -> Guard<'_, T> {
        poll_fn(|cx| {
            if self.held.get() {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            } else {
                self.held.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Guard {
            lock: self,
            value: Some(self.value.borrow_mut()),
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("the value is held until drop")
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_deref_mut()
            .expect("the value is held until drop")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        self.lock.held.set(false);
        // Wake every waiter: each re-checks, one wins, the rest queue again
        // (a waiter whose future was dropped leaves only a stale waker).
        let waiters = core::mem::take(&mut *self.lock.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}
