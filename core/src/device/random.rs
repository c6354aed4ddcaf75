/// Cryptographically secure random bytes.
///
/// Implementations must return output that is unpredictable to an observer of
/// every earlier output: the host's random source, or a CSPRNG seeded from
/// hardware entropy at boot. Filling never fails and never waits: a target
/// that cannot seed securely refuses to boot instead.
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A random `u64`.
    fn next_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}
