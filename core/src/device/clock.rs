use crate::runtime::Instant;

/// Time, read without waiting.
///
/// Implementations must:
/// - make [`Clock::now`] monotonic: it never goes backwards, starts near zero
///   at boot and counts nanoseconds;
/// - make [`Clock::wall`] the host's idea of UTC in nanoseconds since the Unix
///   epoch; it may jump (the host's clock may be set).
///
/// Waiting for time to pass is the runtime's job: see
/// [`runtime::Handle::sleep`](crate::runtime::Handle::sleep).
pub trait Clock {
    /// Monotonic time since boot.
    fn now(&self) -> Instant;
    /// Wall-clock time in nanoseconds since 1970-01-01T00:00:00Z.
    fn wall(&self) -> u64;
}
