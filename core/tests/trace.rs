//! What the executor records when tracing is on: spawns with where they
//! happened, polls as slices on each task's row, wake-ups from the task,
//! timer or device that caused them, idle waits, spans and counters; read
//! back through the trace file format and exported to Chrome JSON.
//!
//! One test per file: tracing is global to the process.

use lamina_core::runtime::{Duration, Executor, Instant, Park};
use lamina_core::trace::{self, Kind, Track, BEGIN, END};
use lamina_trace::file::{Header, Records};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

/// The simulated clock, global because the recorder takes a plain `fn`.
static NOW: AtomicU64 = AtomicU64::new(1_000);

fn now() -> u64 {
    NOW.load(Ordering::Relaxed)
}

/// Jumps to each deadline; a device wakes whoever waits on it at the next park.
#[derive(Default)]
struct SimPark {
    device_waiters: RefCell<Vec<Waker>>,
}

impl Park for SimPark {
    fn now(&self) -> Instant {
        Instant::from_nanos(now())
    }
    fn park(&self, deadline: Option<Instant>) {
        let waiters: Vec<Waker> = self.device_waiters.borrow_mut().drain(..).collect();
        if !waiters.is_empty() {
            waiters.into_iter().for_each(Waker::wake);
            return;
        }
        if let Some(d) = deadline {
            NOW.fetch_max(d.as_nanos(), Ordering::Relaxed);
        }
    }
}

#[test]
fn the_executor_records_tasks_wakeups_spans_and_counters() {
    let words: &'static [AtomicU64] = Box::leak((0..65_536).map(|_| AtomicU64::new(0)).collect());
    assert!(!trace::enabled());
    assert!(trace::install(words, now));
    assert!(!trace::install(words, now), "installed once only");

    let park = Rc::new(SimPark::default());
    let executor = Executor::new(park.clone());
    let rt = executor.handle();
    let device = park.clone();
    executor.block_on(async move {
        let sleeper = rt.spawn({
            let rt = rt.clone();
            async move {
                let span = lamina_core::trace_span!("request", "GET /{}", "index.html");
                rt.sleep(Duration::from_millis(5)).await;
                trace::counter("tcp test", 3, &[("sent", 1460), ("acked", -1)]);
                span.end("200");
            }
        });
        // Wait once on the "device", then for the sleeper.
        let mut waited = false;
        std::future::poll_fn(|cx| {
            if waited {
                return std::task::Poll::Ready(());
            }
            waited = true;
            device.device_waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
        sleeper.await;
    });

    let mut file = Header::new("test", 0).to_bytes().to_vec();
    let dropped = lamina_trace::ring::drain(words, words.len(), |w| {
        file.extend_from_slice(&w.to_le_bytes())
    })
    .unwrap();
    assert_eq!(dropped, 0);
    let (_, records) = Records::new(&file).unwrap();
    let events: Vec<_> = records.map(|r| r.unwrap()).collect();
    let find = |kind: Kind, track: Track| {
        events
            .iter()
            .filter(move |e| e.kind == kind && e.track == track)
    };

    let spawn = find(Kind::Spawn, Track::task(0))
        .next()
        .expect("spawn recorded");
    assert!(
        spawn.string(0).starts_with("core/tests/trace.rs:"),
        "{:?}",
        spawn.string(0)
    );
    assert_eq!(spawn.word(0), Track::MAIN.0 as u64, "spawned by main");
    let task = Track::task(0);
    let wakers: Vec<u32> = find(Kind::Wake, task).map(|e| e.word(0) as u32).collect();
    assert_eq!(
        wakers,
        [Track::MAIN.0, Track::TIMERS.0],
        "spawned by main, then woken by its timer"
    );
    let main_wakers: Vec<u32> = find(Kind::Wake, Track::MAIN)
        .map(|e| e.word(0) as u32)
        .collect();
    assert!(main_wakers.contains(&Track::DEVICES.0), "{main_wakers:?}");
    assert!(
        main_wakers.contains(&task.0),
        "the task's end wakes main: {main_wakers:?}"
    );
    let polls = find(Kind::Poll, task).count();
    assert_eq!(polls, 4, "two polls, each begun and ended");
    assert!(find(Kind::Exit, task).next().is_some());
    let idle: Vec<_> = find(Kind::Idle, Track::IDLE).collect();
    assert!(
        idle.iter()
            .any(|e| e.flags == BEGIN && e.word(0) == 1_000 + 5_000_000),
        "idle until the timer"
    );
    let span: Vec<_> = find(Kind::Span, task).collect();
    assert_eq!(
        (span[0].string(0), span[0].string(1)),
        ("request", "GET /index.html")
    );
    assert_eq!((span[1].flags, span[1].string(0)), (END, "200"));
    assert_eq!(span[1].time - span[0].time, 5_000_000);
    let counter = find(Kind::Counter, Track(3)).next().unwrap();
    assert_eq!((counter.word(0), counter.word(1) as i64), (1460, -1));

    let mut json = Vec::new();
    let summary = lamina_trace::chrome::export(&file, &mut json).unwrap();
    assert_eq!(
        (
            summary.tasks,
            summary.spans,
            summary.counters,
            summary.dropped
        ),
        (2, 1, 1, 0)
    );
    assert!(summary.wakes >= 4);
}
