//! Timers: a queue ordered by deadline, `Sleep` and `Timeout`.

use super::executor::Shared;
use super::Instant;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A timer's place in the queue: its deadline, then registration order, so
/// that timers with equal deadlines fire in the order they were set.
type TimerKey = (Instant, u64);

#[derive(Default)]
pub(crate) struct TimerQueue {
    timers: BTreeMap<TimerKey, Waker>,
    next_seq: u64,
}

impl TimerQueue {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let key = (deadline, self.next_seq);
        self.next_seq += 1;
        self.timers.insert(key, waker);
        key
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(key, _)| key.0)
    }

    /// Removes and returns the wakers of every timer due at `now`, in order.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Waker> {
        let mut expired = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            expired.push(entry.remove());
        }
        expired
    }

    pub(crate) fn clear(&mut self) {
        self.timers.clear();
    }
}

/// Waits until a deadline; see [`Handle::sleep`](super::Handle::sleep).
/// Dropping it cancels the timer.
pub struct Sleep {
    shared: Rc<Shared>,
    deadline: Instant,
    key: Option<TimerKey>,
}

impl Sleep {
    pub(crate) fn new(shared: Rc<Shared>, deadline: Instant) -> Self {
        Sleep {
            shared,
            deadline,
            key: None,
        }
    }

    /// When this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn deregister(&mut self) {
        if let Some(key) = self.key.take() {
            self.shared.timers.borrow_mut().timers.remove(&key);
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.now() >= self.deadline {
            self.deregister();
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut timers = this.shared.timers.borrow_mut();
        match this.key.and_then(|key| timers.timers.get_mut(&key)) {
            Some(waker) => waker.clone_from(cx.waker()),
            // First poll, or the timer fired early (a clock that stepped):
            // (re-)register.
            None => this.key = Some(timers.insert(this.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// The time limit of a [`Timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl core::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

/// Runs a future with a time limit; see [`Handle::timeout`](super::Handle::timeout).
pub struct Timeout<F> {
    future: Pin<alloc::boxed::Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Timeout<F> {
    pub(crate) fn new(future: F, sleep: Sleep) -> Self {
        Timeout {
            future: alloc::boxed::Box::pin(future),
            sleep,
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
