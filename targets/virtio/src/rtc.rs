//! The CMOS real-time clock's date as Unix time.

/// A date and time as the CMOS RTC keeps it, already in binary and 24-hour
/// form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Full year (e.g. 2025).
    pub year: u32,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    /// 0-23.
    pub hour: u32,
    /// 0-59.
    pub minute: u32,
    /// 0-59.
    pub second: u32,
}

/// A BCD byte as binary (`0x59` -> 59).
pub fn from_bcd(v: u8) -> u32 {
    (v >> 4) as u32 * 10 + (v & 0x0f) as u32
}

impl RtcTime {
    /// Seconds since 1970-01-01 00:00:00 UTC (the RTC is assumed to keep
    /// UTC, as QEMU's does by default); `None` for an impossible date.
    pub fn unix_seconds(&self) -> Option<u64> {
        if !(1970..=9999).contains(&self.year)
            || !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = self.year as i64 - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = self.month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs =
            days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64;
        u64::try_from(secs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> RtcTime {
        RtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(t(1970, 1, 1, 0, 0, 0).unix_seconds(), Some(0));
        assert_eq!(t(2000, 3, 1, 0, 0, 0).unix_seconds(), Some(951_868_800));
        assert_eq!(
            t(2024, 2, 29, 12, 34, 56).unix_seconds(),
            Some(1_709_210_096)
        );
        assert_eq!(t(2025, 13, 1, 0, 0, 0).unix_seconds(), None);
        assert_eq!(from_bcd(0x59), 59);
        assert_eq!(from_bcd(0x20), 20);
    }
}
