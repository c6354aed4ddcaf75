//! The [`Clock`] suite: monotonic time never goes back, starts near zero and
//! keeps pace with a sleep; wall time is UTC since 1970 and moves with it.

use crate::{ensure, Report};
use alloc::format;
use lamina_core::device::Clock;
use lamina_core::runtime::{Duration, Handle};

/// 2020-01-01T00:00:00Z in nanoseconds: every real wall clock is past it.
const YEAR_2020_NANOS: u64 = 1_577_836_800 * 1_000_000_000;

/// Runs the suite; `runtime` sleeps between readings.
pub async fn run<C: Clock>(clock: &C, runtime: &Handle) -> Report {
    let mut report = Report::new("Clock");
    let mut last = clock.now();
    let mut backwards = None;
    for _ in 0..10_000 {
        let now = clock.now();
        if now < last {
            backwards = Some((last, now));
        }
        last = now;
    }
    report.record(
        "now never goes backwards",
        ensure(backwards.is_none(), || format!("{backwards:?}")),
    );
    // Since boot: a day is generous for a test process or a guest.
    report.record(
        "now counts from near zero at boot",
        ensure(last.as_nanos() < 86_400 * 1_000_000_000, || {
            format!("now() is {} s", last.as_nanos() / 1_000_000_000)
        }),
    );
    let wall_before = clock.wall();
    report.record(
        "wall is nanoseconds since 1970, after 2020",
        ensure(wall_before > YEAR_2020_NANOS, || {
            format!("wall() is {wall_before}")
        }),
    );
    let before = clock.now();
    runtime.sleep(Duration::from_millis(100)).await;
    let slept = clock.now() - before;
    let wall_slept = clock.wall().saturating_sub(wall_before);
    report.record(
        "now advances by a 100 ms sleep, in nanoseconds",
        ensure(
            (Duration::from_millis(100)..Duration::from_secs(5)).contains(&slept),
            || format!("a 100 ms sleep measured {slept:?}"),
        ),
    );
    // The wall clock may be set while we sleep; a test machine's is not.
    report.record(
        "wall advances with now",
        ensure((50_000_000..5_000_000_000).contains(&wall_slept), || {
            format!("wall moved {wall_slept} ns over a 100 ms sleep")
        }),
    );
    report
}
