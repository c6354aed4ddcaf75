//! A bounded look for work before sleeping that notices a busy host.
//!
//! The tender's threads look for work a while before they sleep, because a
//! sleeping thread's wake-up costs tens of µs on a nested host. On a host
//! whose CPUs are all busy that look competes with the threads that have
//! work (the vCPU's, the clients'), and each `sched_yield` can hand the CPU
//! to another task for a whole scheduler slice (milliseconds). So a look
//! that finds it was off the CPU for a while (a gap between two of its
//! iterations) stops at once and the thread sleeps, to be woken by the
//! next input as a Linux server's threads are. The next look starts afresh:
//! skipping the next looks as well (tried, doubling up to 64) cost 16% of
//! the website's requests/s under wrk -c50 on a quiet 2-CPU host, where the
//! client's threads deschedule the tender's often, and gained nothing with
//! a CPU held by a shell loop.

use std::time::{Duration, Instant};

/// A gap this long between two iterations of a look means the thread was
/// off its CPU: another task wanted it.
pub const DESCHEDULED: Duration = Duration::from_micros(50);

/// One thread's looks: call [`Spin::start`] when it finishes work and
/// [`Spin::look`] at each idle iteration.
#[derive(Debug)]
pub struct Spin {
    window: Duration,
    started: Instant,
    last: Instant,
    /// This period's look ended (its window passed, or the thread was
    /// descheduled): later calls answer no, whatever their gap.
    stopped: bool,
    /// How many looks ended because the thread was descheduled.
    descheduled: u64,
}

impl Spin {
    /// Looks of up to `window` each.
    pub fn new(window: Duration) -> Self {
        let now = Instant::now();
        Spin {
            window,
            started: now,
            last: now,
            stopped: false,
            descheduled: 0,
        }
    }

    /// The thread just worked (or woke): an idle period starts now.
    pub fn start(&mut self) {
        self.start_at(Instant::now());
    }

    /// Whether to look for work once more before sleeping.
    pub fn look(&mut self) -> bool {
        self.look_at(Instant::now())
    }

    /// How many looks ended because the thread was descheduled.
    pub fn descheduled(&self) -> u64 {
        self.descheduled
    }

    fn start_at(&mut self, now: Instant) {
        self.started = now;
        self.last = now;
        self.stopped = false;
    }

    fn look_at(&mut self, now: Instant) -> bool {
        if self.stopped {
            return false;
        }
        let gap = now.saturating_duration_since(self.last);
        self.last = now;
        if gap > DESCHEDULED {
            self.descheduled += 1;
            self.stopped = true;
            return false;
        }
        if now.saturating_duration_since(self.started) < self.window {
            return true;
        }
        self.stopped = true;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_micros(10);

    /// Looks every `STEP` from `at` until the look ends: how many.
    fn look_through(spin: &mut Spin, mut at: Instant) -> u32 {
        let mut looks = 0;
        while spin.look_at(at) {
            looks += 1;
            at += STEP;
        }
        looks
    }

    #[test]
    fn an_undisturbed_look_lasts_its_window() {
        let mut spin = Spin::new(Duration::from_micros(100));
        let at = Instant::now();
        spin.start_at(at);
        assert_eq!(look_through(&mut spin, at), 10);
        // A call long after the look ended (the thread slept since) is no
        // descheduled look.
        assert!(!spin.look_at(at + Duration::from_millis(5)));
        assert_eq!(spin.descheduled(), 0);
    }

    #[test]
    fn a_descheduled_look_stops_for_its_period_only() {
        let mut spin = Spin::new(Duration::from_micros(100));
        let at = Instant::now();
        spin.start_at(at);
        assert!(spin.look_at(at + STEP));
        assert!(!spin.look_at(at + STEP + DESCHEDULED * 2), "off the CPU");
        assert!(
            !spin.look_at(at + STEP * 2 + DESCHEDULED * 2),
            "stays stopped"
        );
        assert_eq!(spin.descheduled(), 1);
        // The next idle period looks its whole window again.
        let later = at + Duration::from_millis(1);
        spin.start_at(later);
        assert_eq!(look_through(&mut spin, later), 10);
    }
}
