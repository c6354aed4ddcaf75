//! Start-up phase timings, printed to stderr with `--x-timing` or when
//! `LAMINA_TENDER_TIMING` is set; silent (and nearly free) otherwise.

use std::time::{Duration, Instant};

/// Environment variable that turns timings on.
pub const ENV: &str = "LAMINA_TENDER_TIMING";

/// A stopwatch over named phases.
#[derive(Debug)]
pub struct Timing {
    enabled: bool,
    before_main: Duration,
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timing {
    /// Starts the stopwatch; `flag` is whether `--x-timing` was given,
    /// `before_main` the CPU time the process used before `main` (exec,
    /// the dynamic loader, libc: [`crate::process::start`]), reported
    /// first.
    pub fn start(flag: bool, before_main: Duration) -> Self {
        let now = Instant::now();
        Timing {
            enabled: flag || std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0"),
            before_main,
            start: now,
            last: now,
            phases: Vec::with_capacity(16),
        }
    }

    /// Whether timings will be printed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Ends the current phase, naming it.
    pub fn mark(&mut self, phase: &'static str) {
        if self.enabled {
            let now = Instant::now();
            self.phases.push((phase, now - self.last));
            self.last = now;
        }
    }

    /// The report: the CPU time before `main`, one line per phase, then
    /// the total since `main`, in microseconds.
    pub fn report(&self, tender: &str) -> String {
        let mut text = format!(
            "{tender}: timing: {:<20} {:>8} us (CPU time)\n",
            "exec to main",
            self.before_main.as_micros()
        );
        for (phase, took) in &self.phases {
            text.push_str(&format!(
                "{tender}: timing: {phase:<20} {:>8} us\n",
                took.as_micros()
            ));
        }
        text.push_str(&format!(
            "{tender}: timing: {:<20} {:>8} us\n",
            "total from main",
            (self.last - self.start).as_micros()
        ));
        text
    }

    /// Prints the report to stderr if enabled.
    pub fn print(&self, tender: &str) {
        if self.enabled {
            eprint!("{}", self.report(tender));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn phases_are_reported_in_order() {
        let mut timing = super::Timing::start(true, std::time::Duration::from_micros(7));
        timing.mark("one");
        std::thread::sleep(std::time::Duration::from_millis(2));
        timing.mark("two");
        let report = timing.report("t");
        let one = report.find("one").unwrap();
        let two = report.find("two").unwrap();
        let main = report.find("exec to main").unwrap();
        assert!(main < one && one < two && report.contains("total"));
        assert!(report.lines().next().unwrap().contains(" 7 us"));
        let mut off = super::Timing::start(false, std::time::Duration::ZERO);
        off.mark("x");
        assert!(!off.report("t").contains(" x "));
    }
}
