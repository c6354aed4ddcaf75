//! Start-up phase timings, printed to stderr with `--x-timing` or when
//! `LAMINA_TENDER_TIMING` is set; silent (and nearly free) otherwise.

use std::time::{Duration, Instant};

/// Environment variable that turns timings on.
pub const ENV: &str = "LAMINA_TENDER_TIMING";

/// A stopwatch over named phases.
#[derive(Debug)]
pub struct Timing {
    enabled: bool,
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timing {
    /// Starts the stopwatch; `flag` is whether `--x-timing` was given.
    pub fn start(flag: bool) -> Self {
        let now = Instant::now();
        Timing {
            enabled: flag || std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0"),
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

    /// The report: one line per phase, then the total, in microseconds.
    pub fn report(&self, tender: &str) -> String {
        let mut text = String::new();
        for (phase, took) in &self.phases {
            text.push_str(&format!(
                "{tender}: timing: {phase:<20} {:>8} us\n",
                took.as_micros()
            ));
        }
        text.push_str(&format!(
            "{tender}: timing: {:<20} {:>8} us\n",
            "total",
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
        let mut timing = super::Timing::start(true);
        timing.mark("one");
        std::thread::sleep(std::time::Duration::from_millis(2));
        timing.mark("two");
        let report = timing.report("t");
        let one = report.find("one").unwrap();
        let two = report.find("two").unwrap();
        assert!(one < two && report.contains("total"));
        let mut off = super::Timing::start(false);
        off.mark("x");
        assert!(!off.report("t").contains(" x "));
    }
}
