//! The runtime: one CPU, one address space, no preemption.
//!
//! An [`Executor`] runs async tasks to completion in turn (the Lwt model).
//! When no task can make progress it asks the platform to [`Park`] until the
//! earliest timer deadline or until a device is ready; on a tender that is
//! Solo5's blocking `yield(deadline)`, on unix `epoll_wait`. An idle
//! application therefore uses no CPU.
//!
//! Tasks reach the runtime through a [`Handle`]: `spawn`, `sleep`, `timeout`
//! and `now`. There is no global executor; libraries that need time or tasks
//! take a `Handle`.

mod executor;
mod task;
mod time;
mod timer;

pub use executor::{Executor, Park};
pub use task::{JoinHandle, Yield};
pub use time::{Duration, Instant};
pub use timer::{Elapsed, Sleep, Timeout};

use alloc::rc::Rc;
use core::future::Future;

/// A cheap, clonable reference to the running executor.
#[derive(Clone)]
pub struct Handle {
    shared: Rc<executor::Shared>,
}

impl Handle {
    /// Monotonic time now.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    /// Starts `future` as a new task. It runs until it finishes, its
    /// [`JoinHandle`] is aborted, or the application's main returns.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.shared.spawn(future)
    }

    /// Waits until `duration` has passed.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }

    /// Waits until `deadline`.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep::new(self.shared.clone(), deadline)
    }

    /// Runs `future` for at most `duration`; when time runs out the future is
    /// dropped (cancelled) and [`Elapsed`] returned.
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        Timeout::new(future, self.sleep(duration))
    }

    /// Lets other ready tasks run before continuing.
    pub fn yield_now(&self) -> Yield {
        Yield::default()
    }
}

#[cfg(test)]
mod tests;
