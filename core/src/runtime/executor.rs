//! The run loop: a ready queue of task indices, a slab of tasks, timers, and
//! the platform's [`Park`] for when nothing is ready.

use super::task::{JoinHandle, TaskWakerRef};
use super::timer::TimerQueue;
use super::{Handle, Instant};
use crate::trace::{self, Kind, Track, BEGIN, END};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::{pin, Pin};
use core::task::{Context, Poll};

/// What the platform does when no task is ready.
pub trait Park {
    /// Monotonic time now.
    fn now(&self) -> Instant;
    /// Blocks until a device may have become ready or `deadline` passes
    /// (`None`: no deadline), waking the tasks waiting on ready devices.
    /// Returns at once, after checking devices, if `deadline` is not in the
    /// future. May return early.
    fn park(&self, deadline: Option<Instant>);
}

/// Index of the main future in the ready queue; tasks use slab indices.
const MAIN: usize = usize::MAX;

/// Task indices whose wakers fired. Wakers may in principle be called from
/// anywhere, so this is behind a (never contended) lock rather than a `RefCell`.
pub(crate) type ReadyQueue = spin::Mutex<VecDeque<usize>>;

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

enum Slot {
    Free,
    /// A task that is not being polled right now.
    Idle(BoxedTask, TaskWakerRef),
    /// A task being polled; `aborted` is set if it is aborted meanwhile.
    Running {
        aborted: bool,
    },
}

struct Entry {
    generation: u64,
    slot: Slot,
}

pub(crate) struct Shared {
    park: Rc<dyn Park>,
    ready: Arc<ReadyQueue>,
    tasks: RefCell<Vec<Entry>>,
    free: RefCell<Vec<usize>>,
    next_generation: Cell<u64>,
    pub(crate) timers: RefCell<TimerQueue>,
}

impl Shared {
    pub(crate) fn now(&self) -> Instant {
        self.park.now()
    }

    #[track_caller]
    pub(crate) fn spawn<F>(self: &Rc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let (task, handle_state) = JoinHandle::wrap(future);
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        let index = match self.free.borrow_mut().pop() {
            Some(index) => index,
            None => {
                let mut tasks = self.tasks.borrow_mut();
                tasks.push(Entry {
                    generation,
                    slot: Slot::Free,
                });
                tasks.len() - 1
            }
        };
        let track = Track::task(generation);
        if trace::enabled() {
            let at = core::panic::Location::caller();
            let at = trace::Detail::format(format_args!("{}:{}", at.file(), at.line()));
            trace::record(
                Kind::Spawn,
                0,
                track,
                &[trace::current().0 as u64],
                &[at.as_str()],
            );
        }
        let waker = TaskWakerRef::new(index, track, self.ready.clone());
        waker.waker.wake_by_ref();
        self.tasks.borrow_mut()[index] = Entry {
            generation,
            slot: Slot::Idle(Box::pin(task), waker),
        };
        JoinHandle::new(handle_state, self.clone(), index, generation)
    }

    /// Drops the task at `index` if it is still the one of `generation`.
    pub(crate) fn abort(&self, index: usize, generation: u64) {
        let dropped = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(entry) = tasks.get_mut(index) else {
                return;
            };
            if entry.generation != generation {
                return;
            }
            match &mut entry.slot {
                Slot::Running { aborted } => {
                    *aborted = true;
                    None
                }
                Slot::Idle(..) => Some(core::mem::replace(&mut entry.slot, Slot::Free)),
                Slot::Free => None,
            }
        };
        if dropped.is_some() {
            self.free.borrow_mut().push(index);
        }
        // `dropped` (the task's future) is dropped here, after the borrow ends,
        // so that its destructors may use the runtime.
        drop(dropped);
    }

    fn poll_task(&self, index: usize) {
        let (mut future, waker, track) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(entry) = tasks.get_mut(index) else {
                return;
            };
            let track = Track::task(entry.generation);
            match core::mem::replace(&mut entry.slot, Slot::Running { aborted: false }) {
                Slot::Idle(future, waker) => (future, waker, track),
                other => {
                    entry.slot = other;
                    return;
                }
            }
        };
        waker.clear_queued();
        let done = traced_poll(track, || {
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker.waker))
                .is_ready()
        });
        let mut tasks = self.tasks.borrow_mut();
        let entry = &mut tasks[index];
        let aborted = matches!(entry.slot, Slot::Running { aborted: true });
        if done || aborted {
            trace::record(Kind::Exit, 0, track, &[], &[]);
            entry.slot = Slot::Free;
            drop(tasks);
            self.free.borrow_mut().push(index);
            drop(future);
        } else {
            entry.slot = Slot::Idle(future, waker);
        }
    }

    fn fire_timers(&self) {
        let now = self.now();
        // Collect first: waking must not hold the timer borrow.
        let expired = self.timers.borrow_mut().take_expired(now);
        let _timers =
            (trace::enabled() && !expired.is_empty()).then(|| trace::enter(Track::TIMERS));
        for waker in expired {
            waker.wake();
        }
    }
}

/// Polls a task on its trace row.
fn traced_poll<T>(track: Track, poll: impl FnOnce() -> T) -> T {
    if !trace::enabled() {
        return poll();
    }
    let _row = trace::enter(track);
    trace::record(Kind::Poll, BEGIN, track, &[], &[]);
    let result = poll();
    trace::record(Kind::Poll, END, track, &[], &[]);
    result
}

/// Parks, recording the wait when it may block: device wake-ups inside it
/// come from the devices' row.
fn traced_park(park: &dyn Park, deadline: Option<Instant>) {
    if !trace::enabled() {
        return park.park(deadline);
    }
    let _row = trace::enter(Track::DEVICES);
    let blocks = deadline.is_none_or(|d| d > park.now());
    if blocks {
        let until = deadline.map_or(u64::MAX, |d| d.as_nanos());
        trace::record(Kind::Idle, BEGIN, Track::IDLE, &[until], &[]);
    }
    park.park(deadline);
    if blocks {
        trace::record(Kind::Idle, END, Track::IDLE, &[], &[]);
    }
}

/// A single-threaded cooperative executor.
///
/// ```
/// use lamina_core::runtime::{Executor, Park, Instant, Duration};
/// use core::cell::Cell;
///
/// // A platform whose time jumps to each deadline: a simulated clock.
/// struct SimClock(Cell<u64>);
/// impl Park for SimClock {
///     fn now(&self) -> Instant { Instant::from_nanos(self.0.get()) }
///     fn park(&self, deadline: Option<Instant>) {
///         if let Some(d) = deadline { self.0.set(self.0.get().max(d.as_nanos())) }
///     }
/// }
///
/// let executor = Executor::new(std::rc::Rc::new(SimClock(Cell::new(0))));
/// let rt = executor.handle();
/// let slept = executor.block_on(async move {
///     let start = rt.now();
///     rt.sleep(Duration::from_secs(5)).await;
///     rt.now() - start
/// });
/// assert_eq!(slept, Duration::from_secs(5));
/// ```
pub struct Executor {
    shared: Rc<Shared>,
}

impl Executor {
    /// An executor that parks on `park` when idle.
    pub fn new(park: Rc<dyn Park>) -> Self {
        Executor {
            shared: Rc::new(Shared {
                park,
                ready: Arc::new(spin::Mutex::new(VecDeque::new())),
                tasks: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                next_generation: Cell::new(0),
                timers: RefCell::new(TimerQueue::default()),
            }),
        }
    }

    /// A handle for spawning tasks and using timers.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Runs `main` and every task spawned meanwhile until `main` finishes;
    /// tasks still running then are dropped.
    pub fn block_on<F: Future>(&self, main: F) -> F::Output {
        let shared = &self.shared;
        let mut main = pin!(main);
        let main_waker = TaskWakerRef::new(MAIN, Track::MAIN, shared.ready.clone());
        main_waker.waker.wake_by_ref();
        let output = 'run: loop {
            // Run what is ready now; tasks woken meanwhile wait for the next
            // round, so that devices and timers are checked between rounds.
            let round = shared.ready.lock().len();
            for _ in 0..round {
                let Some(index) = shared.ready.lock().pop_front() else {
                    break;
                };
                if index == MAIN {
                    main_waker.clear_queued();
                    let mut cx = Context::from_waker(&main_waker.waker);
                    if let Poll::Ready(output) =
                        traced_poll(Track::MAIN, || main.as_mut().poll(&mut cx))
                    {
                        break 'run output;
                    }
                } else {
                    shared.poll_task(index);
                }
            }
            shared.fire_timers();
            let deadline = if shared.ready.lock().is_empty() {
                shared.timers.borrow().next_deadline()
            } else {
                Some(Instant::from_nanos(0)) // check devices without blocking
            };
            traced_park(&*shared.park, deadline);
            shared.fire_timers();
        };
        self.drop_tasks();
        output
    }

    /// Drops every remaining task. Tasks hold handles to the executor, so
    /// this also breaks the reference cycle between them.
    fn drop_tasks(&self) {
        let tasks = core::mem::take(&mut *self.shared.tasks.borrow_mut());
        self.shared.free.borrow_mut().clear();
        self.shared.ready.lock().clear();
        drop(tasks);
        // Futures dropped above may have spawned or registered timers.
        let late = core::mem::take(&mut *self.shared.tasks.borrow_mut());
        drop(late);
        self.shared.timers.borrow_mut().clear();
    }

    /// Number of live tasks (for tests and statistics).
    pub fn task_count(&self) -> usize {
        let tasks = self.shared.tasks.borrow();
        tasks
            .iter()
            .filter(|e| !matches!(e.slot, Slot::Free))
            .count()
    }
}
