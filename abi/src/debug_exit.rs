//! How a virtio guest's exit status crosses QEMU's `isa-debug-exit` device:
//! the guest runtime writes it, `lamina run` reads it back.
//!
//! Writing a byte `v` to the device's port ([`PORT`], QEMU's default
//! `iobase=0x501`) makes QEMU exit at once with `(v << 1) | 1`. QEMU's own
//! failures (a bad option, an unloadable kernel) also exit with 1, so the
//! guest never writes 0: it writes its status `s` (0-126) plus one, and QEMU
//! exits with `2 * s + 3`. `lamina run` maps that back with
//! [`guest_status`]: 3 is status 0, 5 is status 1, 7 is status 2 (a bad
//! command line), and so on; 1 or any even code means the guest did not
//! exit through the device (QEMU failed, or was stopped from outside).

/// The I/O port of QEMU's `isa-debug-exit` device (its default `iobase`).
pub const PORT: u16 = 0x501;

/// Largest guest status that survives the round trip.
pub const MAX_STATUS: i32 = 126;

/// The byte a guest writes for `status`: statuses outside 0-126 are
/// reported as 1 (failure), as they would not fit QEMU's 8-bit exit code.
pub fn device_value(status: i32) -> u8 {
    let status = if (0..=MAX_STATUS).contains(&status) {
        status
    } else {
        1
    };
    status as u8 + 1
}

/// The guest's status from QEMU's exit code, when the guest exited through
/// the device; `None` otherwise.
///
/// ```
/// use lamina_abi::debug_exit::guest_status;
/// assert_eq!(guest_status(3), Some(0));
/// assert_eq!(guest_status(7), Some(2));
/// assert_eq!(guest_status(1), None); // QEMU's own failure
/// assert_eq!(guest_status(0), None);
/// ```
pub fn guest_status(qemu_code: i32) -> Option<i32> {
    (qemu_code & 1 == 1 && (3..=255).contains(&qemu_code)).then_some((qemu_code - 3) >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in 0..=MAX_STATUS {
            let qemu = ((device_value(s) as i32) << 1) | 1;
            assert_eq!(guest_status(qemu), Some(s));
        }
        assert_eq!(device_value(-1), 2);
        assert_eq!(device_value(300), 2);
        assert_eq!(guest_status(1), None);
        assert_eq!(guest_status(2), None);
        assert_eq!(guest_status(256 + 3), None);
    }
}
