/// Text output for people: the unikernel's console, the process's stderr.
///
/// Implementations must:
/// - write the bytes of one call contiguously, never interleaved with another
///   call's bytes;
/// - hand a whole call to the platform at once (on a tender, one hypercall per
///   call rather than one per byte), so callers should write whole lines;
/// - never fail: a console that cannot write drops the text.
///
/// Writing is synchronous: every target's console takes a line without waiting
/// on another device, as Solo5's `solo5_console_write` does.
pub trait Console {
    /// Writes `bytes` as one unit.
    fn write(&self, bytes: &[u8]);

    /// Writes `line` followed by a newline, as one unit.
    fn write_line(&self, line: &str) {
        let mut buf = alloc::vec::Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.write(&buf);
    }
}
