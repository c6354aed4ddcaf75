//! # lamina-conformance: one suite per device trait
//!
//! Each suite checks every guarantee that a trait's documentation states,
//! against any implementation, and returns a [`Report`] of named checks.
//! The suites are `#![no_std]` + `alloc` and generic over the traits, so the
//! same code runs in a host test (the unix target, the simulated network of
//! `lamina-net`'s tests) and inside a unikernel (`tests/guests/conformance`
//! on spt, hvt and virtio).
//!
//! | suite | needs |
//! |-------|-------|
//! | [`console::run`] | the console (the host checks what arrived) |
//! | [`clock::run`] | the clock and the runtime (to sleep) |
//! | [`random::run`] | the random source |
//! | [`block::run`] | a scratch block device: it is overwritten |
//! | [`kv::run_read`], [`kv::run_write`] | a store (an empty one for `run_write`) |
//! | [`netif::run`] | a network interface and a peer that answers ARP |
//! | [`stack::run`] | a stack and a [`peer`] serving on another host (or the same one) |
//!
//! The stack suite needs someone at the other end. [`peer::serve`] is that
//! peer, written once against [`Stack`](lamina_core::device::Stack) too: a
//! host test runs it on the host's own stack, the simulated network on the
//! second stack, and the cli tests as a unix-target process (the Linux
//! kernel's TCP) in the network namespace of the unikernel under test.
//!
//! Guarantees not checked here, and why: a `Netif` dropping frames read
//! too late needs timing the suite cannot bound; `KvWrite::set` being atomic across a crash needs a crash; the
//! quality of `Random` beyond a coarse spread needs statistics far longer
//! than a test. The suites check what a run can observe.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(async_fn_in_trait)]

extern crate alloc;

pub mod block;
pub mod clock;
pub mod console;
pub mod kv;
pub mod netif;
pub mod peer;
pub mod random;
pub mod stack;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The outcome of one named check: `Err` says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked, as a short phrase: `tcp: port 0 picks a port`.
    pub name: &'static str,
    /// `Ok` if the implementation behaved as documented.
    pub outcome: Result<(), String>,
}

/// The checks of one suite on one implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The trait checked: `Stack`, `Block`, ...
    pub suite: &'static str,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report for `suite`.
    pub fn new(suite: &'static str) -> Self {
        Report {
            suite,
            checks: Vec::new(),
        }
    }

    /// Records the outcome of check `name`.
    pub fn record(&mut self, name: &'static str, outcome: Result<(), String>) {
        self.checks.push(Check { name, outcome });
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome.is_err())
    }

    /// The names of every check, passed or not.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.checks.iter().map(|c| c.name)
    }
}

/// One line a check: `conformance Stack ok: NAME` or
/// `conformance Stack FAIL: NAME: why`, then a summary line
/// `conformance Stack: P passed, F failed`. Host tests read these lines from
/// a unikernel's console.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.outcome {
                Ok(()) => writeln!(f, "conformance {} ok: {}", self.suite, check.name)?,
                Err(why) => writeln!(f, "conformance {} FAIL: {}: {why}", self.suite, check.name)?,
            }
        }
        let failed = self.failures().count();
        write!(
            f,
            "conformance {}: {} passed, {failed} failed",
            self.suite,
            self.checks.len() - failed
        )
    }
}

/// `Err(message)` unless `condition` holds: the checks' assertion.
pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// A deterministic byte pattern (`seed` varies it), so that a receiver can
/// tell misordered, lost or duplicated bytes from the right ones.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed).wrapping_mul(7) ^ (i >> 8) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn a_report_passes_only_when_every_check_does() {
        let mut report = Report::new("Demo");
        assert!(!report.passed(), "an empty report proves nothing");
        report.record("first", Ok(()));
        assert!(report.passed());
        report.record("second", Err("went wrong".to_string()));
        assert!(!report.passed());
        assert_eq!(report.failures().count(), 1);
        let text = format!("{report}");
        assert!(text.contains("conformance Demo ok: first"), "{text}");
        assert!(
            text.contains("conformance Demo FAIL: second: went wrong"),
            "{text}"
        );
        assert!(
            text.ends_with("conformance Demo: 1 passed, 1 failed"),
            "{text}"
        );
    }

    #[test]
    fn the_pattern_does_not_repeat_within_a_window() {
        let p = pattern(70_000, 1);
        assert_ne!(p[..251], p[251..502]);
        assert_ne!(pattern(10, 1), pattern(10, 2));
    }
}
