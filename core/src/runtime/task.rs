//! Wakers, join handles and `yield_now`.

use super::executor::{ReadyQueue, Shared};
use crate::trace::{self, Kind, Track};
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

/// The waker of one task: waking puts the task's index on the ready queue
/// once, however often it is woken before it runs.
pub(crate) struct TaskWaker {
    index: usize,
    /// The task's trace row.
    track: Track,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

/// A task's waker, kept with the `Arc` behind it so that the executor can
/// reset the task's `queued` flag without unsafe downcasting.
#[derive(Clone)]
pub(crate) struct TaskWakerRef {
    task: Arc<TaskWaker>,
    pub(crate) waker: Waker,
}

impl TaskWakerRef {
    pub(crate) fn new(index: usize, track: Track, ready: Arc<ReadyQueue>) -> Self {
        let task = Arc::new(TaskWaker {
            index,
            track,
            queued: AtomicBool::new(false),
            ready,
        });
        TaskWakerRef {
            waker: Waker::from(task.clone()),
            task,
        }
    }

    /// Marks the task as taken off the queue, just before it is polled: a
    /// wake-up during the poll queues it again, so none is lost.
    pub(crate) fn clear_queued(&self) {
        self.task.queued.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            trace::record(Kind::Wake, 0, self.track, &[trace::current().0 as u64], &[]);
            self.ready.lock().push_back(self.index);
        }
    }
}

pub(crate) struct JoinState<T> {
    output: Option<T>,
    waiter: Option<Waker>,
}

/// Shared between a spawned task and its [`JoinHandle`].
pub(crate) type JoinCell<T> = Rc<RefCell<JoinState<T>>>;

/// Awaits the output of a spawned task. Dropping the handle detaches the
/// task (it keeps running); [`JoinHandle::abort`] cancels it.
pub struct JoinHandle<T> {
    state: JoinCell<T>,
    shared: Rc<Shared>,
    index: usize,
    generation: u64,
}

impl<T: 'static> JoinHandle<T> {
    /// Wraps `future` so that its output lands in a cell the handle reads.
    pub(crate) fn wrap<F>(future: F) -> (impl Future<Output = ()>, JoinCell<T>)
    where
        F: Future<Output = T> + 'static,
    {
        let state = Rc::new(RefCell::new(JoinState {
            output: None,
            waiter: None,
        }));
        let cell = state.clone();
        let task = async move {
            let output = future.await;
            let waiter = {
                let mut state = cell.borrow_mut();
                state.output = Some(output);
                state.waiter.take()
            };
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        };
        (task, state)
    }

    pub(crate) fn new(
        state: JoinCell<T>,
        shared: Rc<Shared>,
        index: usize,
        generation: u64,
    ) -> Self {
        JoinHandle {
            state,
            shared,
            index,
            generation,
        }
    }

    /// Cancels the task: its future is dropped (at once, or when its current
    /// poll returns if it is aborting itself) and never polled again.
    pub fn abort(self) {
        self.shared.abort(self.index, self.generation);
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().output.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Returned by [`Handle::yield_now`](super::Handle::yield_now): pending once.
#[derive(Default)]
pub struct Yield {
    yielded: bool,
}

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
