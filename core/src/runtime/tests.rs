//! Executor tests on a simulated clock: time jumps to each deadline, so the
//! tests are exact and take no wall time.

use super::*;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::task::{Poll, Waker};

/// A platform whose clock jumps to the deadline when parked, and which can
/// play a device that becomes ready during a park.
#[derive(Default)]
struct SimPark {
    now: Cell<u64>,
    parks: RefCell<Vec<Option<Instant>>>,
    device_waiters: RefCell<Vec<Waker>>,
}

impl Park for SimPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.now.get())
    }
    fn park(&self, deadline: Option<Instant>) {
        self.parks.borrow_mut().push(deadline);
        let waiters: Vec<Waker> = self.device_waiters.borrow_mut().drain(..).collect();
        if !waiters.is_empty() {
            waiters.into_iter().for_each(Waker::wake); // a device became ready
            return;
        }
        match deadline {
            Some(d) => self.now.set(self.now.get().max(d.as_nanos())),
            None => panic!("parked forever with nothing to wake up: a lost wake-up"),
        }
    }
}

fn executor() -> (Executor, Rc<SimPark>) {
    let park = Rc::new(SimPark::default());
    (Executor::new(park.clone()), park)
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn tasks_run_in_spawn_order() {
    let (ex, _) = executor();
    let rt = ex.handle();
    let log = Rc::new(RefCell::new(Vec::new()));
    ex.block_on(async {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let log = log.clone();
                rt.spawn(async move { log.borrow_mut().push(i) })
            })
            .collect();
        for h in handles {
            h.await;
        }
    });
    assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn timers_fire_by_deadline_then_by_registration() {
    let (ex, park) = executor();
    let rt = ex.handle();
    let log = Rc::new(RefCell::new(Vec::new()));
    ex.block_on(async {
        let mut handles = Vec::new();
        for (id, ms) in [(0, 30u64), (1, 10), (2, 20), (3, 10)] {
            let (rt2, log) = (rt.clone(), log.clone());
            handles.push(rt.spawn(async move {
                rt2.sleep(MS * ms as u32).await;
                log.borrow_mut()
                    .push((id, rt2.now().as_nanos() / 1_000_000));
            }));
        }
        for h in handles {
            h.await;
        }
    });
    assert_eq!(*log.borrow(), vec![(1, 10), (3, 10), (2, 20), (0, 30)]);
    // The executor slept exactly until each deadline: no busy waiting.
    let deadlines: Vec<_> = park
        .parks
        .borrow()
        .iter()
        .filter_map(|d| *d)
        .map(|d| d.as_nanos() / 1_000_000)
        .filter(|&d| d > 0)
        .collect();
    assert_eq!(deadlines, vec![10, 20, 30]);
}

#[test]
fn timeout_cancels_the_slow_future_and_its_timer() {
    struct DropFlag(Rc<Cell<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let (ex, park) = executor();
    let rt = ex.handle();
    let dropped = Rc::new(Cell::new(false));
    let (result, fast) = ex.block_on(async {
        let flag = DropFlag(dropped.clone());
        let rt2 = rt.clone();
        let slow = rt.timeout(MS * 50, async move {
            let _flag = flag;
            rt2.sleep(MS * 1000).await;
        });
        let result = slow.await;
        let fast = rt.timeout(MS * 50, async { 7 }).await;
        (result, fast)
    });
    assert_eq!(result, Err(Elapsed));
    assert_eq!(fast, Ok(7));
    assert!(dropped.get(), "the timed-out future was not dropped");
    assert_eq!(park.now.get(), 50_000_000, "time ran past the timeout");
    // The cancelled 1000 ms timer never became a deadline.
    assert!(park
        .parks
        .borrow()
        .iter()
        .all(|d| d.is_none_or(|d| d.as_nanos() <= 50_000_000)));
}

#[test]
fn aborted_tasks_never_run_again() {
    let (ex, _) = executor();
    let rt = ex.handle();
    let runs = Rc::new(Cell::new(0));
    ex.block_on(async {
        let (rt2, runs2) = (rt.clone(), runs.clone());
        let task = rt.spawn(async move {
            loop {
                runs2.set(runs2.get() + 1);
                rt2.sleep(MS * 10).await;
            }
        });
        rt.sleep(MS * 25).await; // runs at 0, 10, 20
        task.abort();
        rt.sleep(MS * 100).await;
    });
    assert_eq!(runs.get(), 3);
    assert_eq!(ex.task_count(), 0);
}

#[test]
fn a_task_may_abort_itself_and_spawn_while_running() {
    let (ex, _) = executor();
    let rt = ex.handle();
    let slot: Rc<RefCell<Option<JoinHandle<()>>>> = Rc::new(RefCell::new(None));
    let after = Rc::new(Cell::new(false));
    ex.block_on(async {
        let (rt2, slot2, after2) = (rt.clone(), slot.clone(), after.clone());
        let handle = rt.spawn(async move {
            rt2.yield_now().await;
            let child = rt2.spawn(async { 5 });
            assert_eq!(child.await, 5);
            if let Some(me) = slot2.borrow_mut().take() {
                me.abort();
            }
            rt2.yield_now().await;
            after2.set(true);
        });
        *slot.borrow_mut() = Some(handle);
        rt.sleep(MS).await;
    });
    assert!(!after.get(), "the task ran after aborting itself");
    assert_eq!(ex.task_count(), 0);
}

#[test]
fn no_wake_up_is_lost() {
    // A device becomes ready while the executor is parked; its waiter must run.
    struct WaitDevice {
        park: Rc<SimPark>,
        ready: Rc<Cell<bool>>,
    }
    impl core::future::Future for WaitDevice {
        type Output = ();
        fn poll(self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<()> {
            if self.ready.get() {
                return Poll::Ready(());
            }
            self.ready.set(true); // ready from the next park on
            self.park
                .device_waiters
                .borrow_mut()
                .push(cx.waker().clone());
            Poll::Pending
        }
    }
    let (ex, park) = executor();
    let rt = ex.handle();
    let done = ex.block_on(async {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let dev = WaitDevice {
                    park: park.clone(),
                    ready: Rc::new(Cell::new(false)),
                };
                rt.spawn(async move {
                    dev.await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await;
        }
        sum
    });
    assert_eq!(done, (0..100).sum::<i32>());
    // SimPark panics if the executor ever parks forever with nothing to wake
    // it, so reaching here proves every wake-up arrived.
}

#[test]
fn waking_during_poll_requeues_the_task() {
    let (ex, _) = executor();
    let rt = ex.handle();
    let polls = Rc::new(Cell::new(0));
    let polls2 = polls.clone();
    ex.block_on(async move {
        core::future::poll_fn(|cx| {
            polls2.set(polls2.get() + 1);
            if polls2.get() < 3 {
                cx.waker().wake_by_ref(); // woken while being polled
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        rt.yield_now().await;
    });
    assert_eq!(polls.get(), 3);
}

#[test]
fn idle_executor_blocks_instead_of_spinning() {
    let (ex, park) = executor();
    let rt = ex.handle();
    ex.block_on(async {
        for _ in 0..10 {
            rt.sleep(Duration::from_secs(1)).await;
        }
    });
    // One blocking park per second of sleep, plus the non-blocking device
    // checks between rounds of ready tasks.
    let blocking = park
        .parks
        .borrow()
        .iter()
        .filter(|d| d.is_some_and(|d| d.as_nanos() > 0))
        .count();
    assert_eq!(blocking, 10);
    assert!(
        park.parks.borrow().len() <= 25,
        "{} parks for 10 sleeps",
        park.parks.borrow().len()
    );
}

#[test]
fn leftover_tasks_are_dropped_when_main_returns() {
    let (ex, _) = executor();
    let rt = ex.handle();
    ex.block_on(async {
        let rt2 = rt.clone();
        rt.spawn(async move { rt2.sleep(Duration::from_secs(3600)).await });
    });
    assert_eq!(ex.task_count(), 0);
    // The handle held by the dropped task is gone: only ours remains.
    assert_eq!(Rc::strong_count(&rt.shared), 2);
}
