//! A bounded look for work before sleeping that notices a busy host.
//!
//! The tender's threads look for work a while before they sleep, because a
//! sleeping thread's wake-up costs tens of µs on a nested host. On a host
//! whose CPUs are all busy that look competes with the threads that have
//! work (the vCPU's, the clients'), and each `sched_yield` can hand the CPU
//! to another task for a whole scheduler slice (milliseconds). So a look
//! that finds it was off the CPU for a while (a gap between two of its
//! iterations) stops at once, and the next looks are skipped, twice as many
//! each time up to [`MAX_SKIPS`], until one runs undisturbed: on a busy host
//! the threads sleep and are woken, as a Linux server's threads are.

use std::time::{Duration, Instant};

/// A gap this long between two iterations of a look means the thread was
/// off its CPU: another task wanted it.
pub const DESCHEDULED: Duration = Duration::from_micros(50);
/// Most idle periods in a row that sleep without looking.
pub const MAX_SKIPS: u32 = 64;

/// One thread's looks: call [`Spin::start`] when it finishes work and
/// [`Spin::look`] at each idle iteration.
#[derive(Debug)]
pub struct Spin {
    window: Duration,
    started: Instant,
    last: Instant,
    /// This period sleeps without looking.
    skipping: bool,
    /// Periods left that sleep without looking, and the length of the last
    /// such run.
    skips: (u32, u32),
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
            skipping: false,
            skips: (0, 0),
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
        let (left, run) = self.skips;
        self.skipping = left > 0;
        if self.skipping {
            self.skips = (left - 1, run);
        }
    }

    fn look_at(&mut self, now: Instant) -> bool {
        if self.skipping {
            return false;
        }
        let gap = now.saturating_duration_since(self.last);
        self.last = now;
        if gap > DESCHEDULED {
            self.descheduled += 1;
            let run = (self.skips.1 * 2).clamp(1, MAX_SKIPS);
            self.skips = (run, run);
            self.skipping = true;
            return false;
        }
        if now.saturating_duration_since(self.started) < self.window {
            return true;
        }
        // A whole look undisturbed: the host has room again.
        self.skips = (0, 0);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_micros(10);

    /// Looks every `STEP` from `at` until the look ends; how many and when.
    fn look_through(spin: &mut Spin, mut at: Instant) -> (u32, Instant) {
        let mut looks = 0;
        while spin.look_at(at) {
            looks += 1;
            at += STEP;
        }
        (looks, at)
    }

    #[test]
    fn an_undisturbed_look_lasts_its_window() {
        let mut spin = Spin::new(Duration::from_micros(100));
        let at = Instant::now();
        spin.start_at(at);
        assert_eq!(look_through(&mut spin, at), (10, at + STEP * 10));
        assert_eq!(spin.descheduled(), 0);
    }

    #[test]
    fn a_descheduled_look_stops_and_the_next_ones_are_skipped_twice_as_long() {
        let mut spin = Spin::new(Duration::from_micros(100));
        let mut at = Instant::now();
        for skipped in [1, 2, 4, 8] {
            spin.start_at(at);
            assert!(spin.look_at(at + STEP));
            assert!(!spin.look_at(at + STEP + DESCHEDULED * 2), "off the CPU");
            at += Duration::from_millis(1);
            for _ in 0..skipped {
                spin.start_at(at);
                assert!(!spin.look_at(at), "a skipped period looks not at all");
                at += Duration::from_millis(1);
            }
        }
        assert_eq!(spin.descheduled(), 4);
        // The skips used up, a look runs again; one that runs its whole
        // window undisturbed ends the back-off.
        spin.start_at(at);
        assert_eq!(look_through(&mut spin, at).0, 10);
        spin.start_at(at + Duration::from_millis(1));
        assert!(spin.look_at(at + Duration::from_millis(1)));
    }

    #[test]
    fn the_back_off_is_bounded() {
        let mut spin = Spin::new(Duration::from_micros(100));
        let mut at = Instant::now();
        for _ in 0..20 {
            spin.start_at(at);
            spin.look_at(at + DESCHEDULED * 2);
            at += Duration::from_millis(1);
            while {
                spin.start_at(at);
                !spin.look_at(at)
            } {
                at += Duration::from_millis(1);
            }
        }
        assert_eq!(spin.skips.1, MAX_SKIPS);
    }
}
