//! Whole-stack tracing: the recording side.
//!
//! The executor records task spawns, polls, wake-ups, timers and idle
//! waits; libraries add spans, counters and instants with
//! [`trace_span!`](crate::trace_span), [`counter`] and [`instant`]. Records
//! go into a [`lamina_trace::Ring`] in guest memory that the target
//! installs at boot when tracing was asked for (`lamina run --trace FILE`);
//! the tender or the target drains it to a file.
//!
//! Off (the default, and always until a target calls [`install`]),
//! recording costs one relaxed load and a branch per call site. On, a
//! record is a few stores into the ring: no allocation, no lock, no
//! waiting (a full ring drops the record and counts it). Details are
//! formatted into a buffer on the stack.
//!
//! Tracing is global, unlike the rest of core: a frame sent deep inside the
//! network stack has no handle to pass a recorder through, and there is one
//! recorder per unikernel.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
pub use lamina_trace::record::{BEGIN, END, IN, OUT};
use lamina_trace::Ring;
pub use lamina_trace::{Kind, Track};

static ENABLED: AtomicBool = AtomicBool::new(false);
static RING: spin::Once<(Ring<'static>, fn() -> u64)> = spin::Once::new();
/// The row events recorded now belong to: the task being polled, or the
/// timers or devices while the executor fires or waits for them.
static CURRENT: AtomicU32 = AtomicU32::new(0);

/// Starts recording into `words` (control words and data, see
/// [`lamina_trace::ring`]), with `now` giving nanoseconds of the monotonic
/// clock. Returns false if tracing was installed already or `words` is too
/// small. Targets call this at boot; applications never do.
pub fn install(words: &'static [AtomicU64], now: fn() -> u64) -> bool {
    let Some(ring) = Ring::new(words) else {
        return false;
    };
    let mut installed = false;
    RING.call_once(|| {
        installed = true;
        (ring, now)
    });
    if installed {
        ENABLED.store(true, Ordering::Release);
    }
    installed
}

/// Whether events are being recorded.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The row events go to now.
pub fn current() -> Track {
    Track(CURRENT.load(Ordering::Relaxed))
}

/// Makes `track` the current row until the returned value is dropped.
pub(crate) fn enter(track: Track) -> Entered {
    Entered(CURRENT.swap(track.0, Ordering::Relaxed))
}

/// Restores the previous row when dropped.
pub(crate) struct Entered(u32);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.store(self.0, Ordering::Relaxed);
    }
}

/// Records one event if tracing is on.
#[inline]
pub fn record(kind: Kind, flags: u8, track: Track, fixed: &[u64], strings: &[&str]) {
    if !enabled() {
        return;
    }
    if let Some((ring, now)) = RING.get() {
        ring.push(kind, flags, track, now(), fixed, strings);
    }
}

/// Records an instant on the current row.
pub fn instant(name: &str, detail: &str) {
    record(Kind::Instant, 0, current(), &[], &[name, detail]);
}

/// Records a sample of the counter series `name` (`series` tells apart
/// series of the same name, such as one per TCP connection): one value per
/// field, at most [`lamina_trace::record::MAX_FIELDS`].
///
/// ```
/// lamina_core::trace::counter("tcp 10.0.0.2:80 10.0.0.1:4242", 7, &[("sent", 1460), ("acked", 0)]);
/// ```
pub fn counter(name: &str, series: u32, fields: &[(&str, i64)]) {
    if !enabled() {
        return;
    }
    const N: usize = lamina_trace::record::MAX_FIELDS;
    let fields = &fields[..fields.len().min(N)];
    let mut values = [0u64; N];
    let mut names = [""; N + 1];
    names[0] = name;
    for (i, (field, value)) in fields.iter().enumerate() {
        values[i] = *value as u64;
        names[i + 1] = field;
    }
    let n = fields.len();
    record(
        Kind::Counter,
        n as u8,
        Track(series),
        &values[..n],
        &names[..=n],
    );
}

/// Records a frame through network interface `netif`: [`IN`] or [`OUT`].
pub fn frame(netif: u32, direction: u8, bytes: usize) {
    record(Kind::Frame, direction, Track(netif), &[bytes as u64], &[]);
}

/// A span of work on the current row, ended when dropped or by
/// [`Span::end`]. Made by [`trace_span!`](crate::trace_span).
#[must_use = "a span ends when dropped"]
pub struct Span {
    track: Option<Track>,
}

impl Span {
    /// Begins a span named `name` (a static name: the row's slice title)
    /// with `detail` (the arguments: a path, a key).
    pub fn begin(name: &str, detail: &str) -> Span {
        Span::begin_on(current(), name, detail)
    }

    /// Begins a span on a given row (the block device's, say).
    pub fn begin_on(track: Track, name: &str, detail: &str) -> Span {
        if !enabled() {
            return Span { track: None };
        }
        record(Kind::Span, BEGIN, track, &[], &[name, detail]);
        Span { track: Some(track) }
    }

    /// Ends the span with a result formatted from `args` (only when the
    /// span is being recorded).
    pub fn end_fmt(self, args: core::fmt::Arguments<'_>) {
        if self.track.is_some() {
            self.end(Detail::format(args).as_str());
        }
    }

    /// Ends the span with a result (a status, an error).
    pub fn end(mut self, result: &str) {
        if let Some(track) = self.track.take() {
            record(Kind::Span, END, track, &[], &[result]);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(track) = self.track.take() {
            record(Kind::Span, END, track, &[], &[""]);
        }
    }
}

/// A string formatted on the stack, cut at [`Detail::CAPACITY`] bytes:
/// what [`trace_span!`](crate::trace_span) formats details into, so that
/// recording never allocates.
pub struct Detail {
    bytes: [u8; Detail::CAPACITY],
    len: usize,
}

impl Detail {
    /// Bytes kept; the rest is cut.
    pub const CAPACITY: usize = 256;

    /// `args` formatted.
    pub fn format(args: core::fmt::Arguments<'_>) -> Detail {
        let mut detail = Detail {
            bytes: [0; Detail::CAPACITY],
            len: 0,
        };
        let _ = detail.write_fmt(args); // cut short when full: fine
        detail
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in (see `write_str`).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Detail {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = Detail::CAPACITY - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Begins a traced span on the current task's row; it ends when the value
/// is dropped, or with `.end(result)`. The detail is formatted only when
/// tracing is on.
///
/// ```
/// let path = "/index.html";
/// let span = lamina_core::trace_span!("request", "GET {path}");
/// // ... serve it ...
/// span.end("200");
/// ```
#[macro_export]
macro_rules! trace_span {
    ($name:expr) => {
        $crate::trace::Span::begin($name, "")
    };
    ($name:expr, $($detail:tt)+) => {
        if $crate::trace::enabled() {
            $crate::trace::Span::begin($name, $crate::trace::Detail::format(format_args!($($detail)+)).as_str())
        } else {
            $crate::trace::Span::begin("", "")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let detail = Detail::format(format_args!("x{long}"));
        assert_eq!(detail.as_str().len(), 255);
        assert!(detail.as_str().starts_with("xé"));
    }
}
