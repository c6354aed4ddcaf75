//! Time from the TSC: reading it, converting ticks to nanoseconds without
//! division on the hot path, and a monotonic clock that counts from a start.

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter and nothing else; it is
    // allowed at any privilege level on Linux and in Lamina's guests.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds since [`TscClock::start`], from the TSC: the monotonic clock
/// of a target that knows its TSC's frequency (hvt's boot info, virtio's
/// calibration). Kept in a `static`, started once.
pub struct TscClock {
    start: spin::Once<(u64, TscScale)>,
}

impl TscClock {
    /// A clock not started yet: it reads 0.
    pub const fn new() -> Self {
        TscClock {
            start: spin::Once::new(),
        }
    }

    /// Starts counting now, at `scale`; later calls change nothing.
    pub fn start(&self, scale: TscScale) {
        self.start.call_once(|| (rdtsc(), scale));
    }

    /// Nanoseconds since the start (0 before it).
    pub fn now_ns(&self) -> u64 {
        match self.start.get() {
            Some((start, scale)) => scale.to_nanos(rdtsc().saturating_sub(*start)),
            None => 0,
        }
    }
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Scales TSC ticks to nanoseconds: `ns = ticks * mult >> 32`, with the
/// product taken in 128 bits so that it cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscScale {
    mult: u64,
}

impl TscScale {
    /// The scale for a TSC running at `hz` ticks a second; `None` for a
    /// frequency no real TSC has (below 1 MHz).
    pub fn new(hz: u64) -> Option<Self> {
        if hz < 1_000_000 {
            return None;
        }
        let mult = ((1_000_000_000u128 << 32) / hz as u128) as u64;
        Some(TscScale { mult })
    }

    /// Nanoseconds in `ticks`.
    pub fn to_nanos(self, ticks: u64) -> u64 {
        ((ticks as u128 * self.mult as u128) >> 32) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_common_frequencies_exactly_enough() {
        for hz in [
            1_000_000_000u64,
            2_300_000_000,
            2_999_999_999,
            3_700_000_123,
        ] {
            let s = TscScale::new(hz).unwrap();
            // One second of ticks is one second, within a microsecond.
            assert!(s.to_nanos(hz).abs_diff(1_000_000_000) < 1_000, "{hz}");
            // A day of ticks does not overflow and stays within 0.1 ms.
            let day = hz * 86_400;
            assert!(
                s.to_nanos(day).abs_diff(86_400_000_000_000) < 100_000,
                "{hz}"
            );
        }
        assert_eq!(TscScale::new(0), None);
        assert_eq!(TscScale::new(999_999), None);
    }

    #[test]
    fn tsc_clock_reads_zero_until_started_then_advances() {
        let clock = TscClock::new();
        assert_eq!(clock.now_ns(), 0);
        clock.start(TscScale::new(1_000_000_000).unwrap());
        let a = clock.now_ns();
        let spin_until = rdtsc() + 10_000;
        while rdtsc() < spin_until {}
        assert!(clock.now_ns() > a);
    }
}
