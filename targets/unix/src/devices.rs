//! Console, clock and random on the host.

use crate::reactor::Reactor;
use lamina_core::device::{Clock, Console, Random};
use lamina_core::runtime::{Instant, Park};
use std::io::Write;
use std::rc::Rc;

/// The console is the process's standard output.
#[derive(Clone, Default)]
pub struct StdoutConsole;

impl Console for StdoutConsole {
    fn write(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pipe whose reader left) drops the text, as the
        // trait allows; it is not the application's failure.
        let _ = out.write_all(bytes).and_then(|()| out.flush());
    }
}

/// Monotonic time from `CLOCK_MONOTONIC` (shared with the reactor, so timers
/// and `now` agree); wall time from `CLOCK_REALTIME`.
#[derive(Clone)]
pub struct HostClock {
    pub(crate) reactor: Rc<Reactor>,
}

impl HostClock {
    /// The clock whose monotonic time is `reactor`'s.
    pub fn new(reactor: Rc<Reactor>) -> Self {
        HostClock { reactor }
    }
}

impl Clock for HostClock {
    fn now(&self) -> Instant {
        self.reactor.now()
    }

    fn wall(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The kernel's random source (`getrandom(2)`).
#[derive(Clone, Default)]
pub struct HostRandom;

impl Random for HostRandom {
    fn fill(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // The trait promises unpredictable bytes or nothing at all.
            eprintln!("lamina: the kernel's random source failed: {e}");
            std::process::abort();
        }
    }
}
