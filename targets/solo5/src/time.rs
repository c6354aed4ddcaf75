//! Converting TSC ticks to nanoseconds without division on the hot path.

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
}
