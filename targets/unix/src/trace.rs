//! Tracing on unix: when `LAMINA_TRACE=FILE` is set (`lamina run --trace`
//! sets it), the process records into a ring on its heap and writes it to
//! FILE in the trace file format ([`lamina_trace::file`]) each time the
//! executor parks and at exit. Each drain is one `write(2)`, unbuffered, so
//! that a process stopped by a signal while it waits has written
//! everything. `LAMINA_TRACE_MIB` sizes the ring (default
//! 8 MiB); when the application outruns the writer, records are dropped and
//! the file says how many.

use lamina_trace::file::Header;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Instant;

/// Environment variable naming the trace file.
pub const TRACE_ENV: &str = "LAMINA_TRACE";
/// Environment variable giving the ring's size in MiB.
pub const TRACE_MIB_ENV: &str = "LAMINA_TRACE_MIB";

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since tracing started, the clock every record carries.
fn now() -> u64 {
    START.get().map_or(0, |s| {
        u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX)
    })
}

/// The writer side: the ring and the file it drains to.
pub struct Tracer {
    ring: &'static [AtomicU64],
    file: RefCell<File>,
    buffer: RefCell<Vec<u8>>,
    dropped: std::cell::Cell<u64>,
}

impl Tracer {
    /// Starts tracing if `LAMINA_TRACE` asks for it; an error says why it
    /// could not (the caller reports it and exits).
    pub fn from_env() -> Result<Option<Tracer>, String> {
        let Some(path) = std::env::var_os(TRACE_ENV) else {
            return Ok(None);
        };
        let mib = match std::env::var(TRACE_MIB_ENV) {
            Err(_) => 8,
            Ok(v) => v
                .parse::<usize>()
                .ok()
                .filter(|m| (1..=1024).contains(m))
                .ok_or_else(|| format!("{TRACE_MIB_ENV}={v}: a ring size in MiB from 1 to 1024"))?,
        };
        let file = File::create(&path)
            .map_err(|e| format!("{TRACE_ENV}={}: {e}", path.to_string_lossy()))?;
        let start = *START.get_or_init(Instant::now);
        let mut file = file;
        let header = Header::new("unix", monotonic_at(start));
        file.write_all(&header.to_bytes())
            .map_err(|e| e.to_string())?;
        let words = (mib << 20) / 8;
        let ring: &'static [AtomicU64] = Box::leak((0..words).map(|_| AtomicU64::new(0)).collect());
        if !lamina_core::trace::install(ring, now) {
            return Err("tracing was started twice in this process".into());
        }
        Ok(Some(Tracer {
            ring,
            file: RefCell::new(file),
            buffer: RefCell::default(),
            dropped: 0.into(),
        }))
    }

    /// Writes out what was recorded since the last call.
    pub fn drain(&self) -> io::Result<()> {
        let mut buffer = self.buffer.borrow_mut();
        buffer.clear();
        let dropped = lamina_trace::ring::drain(self.ring, self.ring.len(), |word| {
            buffer.extend_from_slice(&word.to_le_bytes())
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
        let lost = dropped.saturating_sub(self.dropped.replace(dropped));
        if lost > 0 {
            let (kind, track) = (lamina_trace::Kind::Dropped, lamina_trace::Track::NONE);
            lamina_trace::record::encode(&mut buffer, kind, 0, track, 0, &[lost], &[]);
        }
        if buffer.is_empty() {
            return Ok(());
        }
        self.file.borrow_mut().write_all(&buffer)
    }

    /// Writes out everything.
    pub fn finish(&self) -> io::Result<()> {
        self.drain()
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds at `instant` (std's `Instant` is that
/// clock on Linux), for the file header.
fn monotonic_at(instant: Instant) -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let now_ns = now.tv_sec * 1_000_000_000 + now.tv_nsec;
    now_ns - instant.elapsed().as_nanos() as i64
}
