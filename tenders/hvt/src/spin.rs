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
//!
//! What does tell a busy host from a quiet one is whether looks pay: an
//! adaptive [`Spin`] (the network ring thread's) keeps a moving average of
//! the share of its looks that found work and, while under half did,
//! sleeps at once, looking again in one idle period in sixteen.

use std::time::{Duration, Instant};

/// A gap this long between two iterations of a look means the thread was
/// off its CPU: another task wanted it.
pub const DESCHEDULED: Duration = Duration::from_micros(50);

/// Score of a look that found work (out of [`SCORE_ONE`]).
const SCORE_ONE: u32 = 1 << 10;
/// Below this share of looks finding work, looking does not pay: the
/// thread sleeps at once, looking only every [`PROBE_EVERY`]th idle period
/// to see whether it pays again. Measured on the website under wrk -c50
/// (2 CPUs, KVM-PVM): on a quiet host 85% of the network ring thread's
/// looks found work; with a CPU held by a shell loop 28% did, and each
/// failed look had handed the CPU to the loop for a scheduler slice
/// through its `sched_yield` while the guest waited for the thread.
const PAYS: u32 = SCORE_ONE / 2;
/// While looking does not pay, one idle period in this many looks anyway.
const PROBE_EVERY: u32 = 16;

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
    /// Whether this idle period looked at all.
    looked: bool,
    /// With [`Spin::adaptive`]: the recent share of looks that found work
    /// (out of [`SCORE_ONE`], a moving average over about 8 looks); `None`:
    /// always look.
    score: Option<u32>,
    /// Idle periods since the last probe while looking does not pay.
    unprobed: u32,
    /// How many looks found work.
    caught: u64,
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
            looked: false,
            score: None,
            unprobed: 0,
            caught: 0,
        }
    }

    /// Looks of up to `window` each while they pay: the caller tells how
    /// each idle period ended ([`Spin::found_work`], [`Spin::sleeps`]), and
    /// while fewer than half of the recent looks found work the thread
    /// looks only in one idle period in [`PROBE_EVERY`].
    pub fn adaptive(window: Duration) -> Self {
        Spin {
            score: Some(SCORE_ONE),
            ..Spin::new(window)
        }
    }

    /// The thread just worked (or woke): an idle period starts now.
    pub fn start(&mut self) {
        self.start_at(Instant::now());
    }

    /// The thread found work after this idle period's look, if it looked.
    pub fn found_work(&mut self) {
        if self.looked {
            self.caught += 1;
            self.score_look(SCORE_ONE);
        }
    }

    /// The thread is going to sleep: this idle period's look, if any,
    /// found nothing.
    pub fn sleeps(&mut self) {
        if self.looked {
            self.score_look(0);
        }
    }

    /// How many looks found work.
    pub fn caught(&self) -> u64 {
        self.caught
    }

    fn score_look(&mut self, outcome: u32) {
        if let Some(score) = &mut self.score {
            *score = (*score * 7 + outcome) / 8;
        }
        self.looked = false;
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
        self.looked = false;
        if self.score.is_some_and(|score| score < PAYS) {
            self.unprobed += 1;
            if self.unprobed < PROBE_EVERY {
                self.stopped = true;
            } else {
                self.unprobed = 0;
            }
        }
    }

    fn look_at(&mut self, now: Instant) -> bool {
        if self.stopped {
            return false;
        }
        self.looked = true;
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

    /// `n` idle periods from `at`, a millisecond apart, whose looks find
    /// work when `finds` says so of the period's number: how many looked.
    fn periods(spin: &mut Spin, at: &mut Instant, n: u32, finds: impl Fn(u32) -> bool) -> u32 {
        let mut looked = 0;
        for i in 0..n {
            *at += Duration::from_millis(1);
            spin.start_at(*at);
            if spin.look_at(*at + STEP) {
                looked += 1;
                if finds(i) {
                    spin.found_work();
                    continue;
                }
            }
            spin.sleeps();
        }
        looked
    }

    #[test]
    fn looks_stop_while_they_do_not_pay_and_resume_when_they_do() {
        let mut spin = Spin::adaptive(Duration::from_micros(100));
        let mut at = Instant::now();
        // Most looks find work (a quiet host): every period looks.
        assert_eq!(periods(&mut spin, &mut at, 100, |i| i % 5 != 0), 100);
        // Few do (a busy host): after a few misses only probes look.
        let looked = periods(&mut spin, &mut at, 320, |i| i % 4 == 0);
        assert!(looked < 40, "{looked} of 320 periods looked");
        assert!(looked >= 320 / PROBE_EVERY, "probes: {looked}");
        // Looks pay again: the probes notice and every period looks again.
        periods(&mut spin, &mut at, 200, |_| true);
        assert_eq!(periods(&mut spin, &mut at, 50, |_| true), 50);
        // A plain Spin always looks.
        let mut plain = Spin::new(Duration::from_micros(100));
        assert_eq!(periods(&mut plain, &mut at, 100, |_| false), 100);
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
