//! `--trace=FILE`: the tender records the guest's trace.
//!
//! A guest that records (`lamina_trace::ring`) registers its ring with
//! [`Hypercall::TraceRegister`](lamina_abi::hvt::Hypercall::TraceRegister)
//! once the boot info offers [`HOST_FEATURE_TRACE`]. From then on a thread
//! of the tender ([`TraceThread`]) drains the ring out of guest memory
//! every [`DRAIN_INTERVAL`] and once more when the guest has stopped (a
//! halt, a panic's abort, a fault or a stop signal): the guest makes no
//! exit for it. Only a SIGKILL of the tender loses the records of the last
//! interval.
//!
//! Nothing the guest writes is trusted. The ring's place and size are
//! checked once, at registration, through the one checked path to guest
//! memory ([`SharedView`]); the consumer's index is the tender's own (the
//! ring's `TAIL` word is only written, for the guest); a `HEAD` that is
//! behind it or more than the capacity ahead, and words that do not parse
//! as records, are skipped and counted as lost records (one per damaged
//! stretch) in a `Dropped` record; control words that stop making sense
//! end the recording. The file grows by at most the capacity per drain
//! and [`MAX_FILE_BYTES`] in all.
//!
//! One clock: the guest's is the TSC from its boot, scaled by the
//! frequency the tender reported; the registration carries the guest's
//! reading, and the tender takes `CLOCK_MONOTONIC` as it handles the call.
//! Their difference is the file header's clock offset (a record's time
//! plus the offset is the tender's `CLOCK_MONOTONIC`), late by the exit's
//! own cost (50-70 µs on this nested KVM-PVM host, 1-2 µs on bare metal).

use lamina_abi::hvt::HcTraceRegister;
use lamina_abi::Solo5Result;
use lamina_tender::mem::SharedView;
use lamina_trace::file::Header;
use lamina_trace::record::{self, header, Kind, Track};
use lamina_trace::ring::{
    CAPACITY, CONTROL_WORDS, DROPPED, HEAD, MAGIC, MIN_CAPACITY, RING_MAGIC, TAIL,
};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use lamina_abi::hvt::HOST_FEATURE_TRACE;

/// How often the tender drains a running guest's ring.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(20);
/// Largest ring the tender drains.
pub const MAX_RING_BYTES: u64 = 256 << 20;
/// Most bytes of records in one trace file; records past it are counted as
/// lost.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A registered ring: its guest address and size in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPlace {
    /// Guest address of word 0.
    pub gpa: u64,
    /// Words, control words included.
    pub words: u64,
}

impl RingPlace {
    /// Checks a registration: 8-byte aligned, at least the control words
    /// and [`MIN_CAPACITY`] data words, at most [`MAX_RING_BYTES`], and
    /// wholly inside guest memory the tender may read and write.
    pub fn check(view: &SharedView, gpa: u64, words: u64) -> Option<RingPlace> {
        let bytes = words.checked_mul(8)?;
        let enough = words >= (CONTROL_WORDS + MIN_CAPACITY) as u64;
        if !gpa.is_multiple_of(8) || !enough || bytes > MAX_RING_BYTES {
            return None;
        }
        view.bytes_mut(gpa, bytes).ok()?;
        Some(RingPlace { gpa, words })
    }

    fn capacity(&self) -> u64 {
        self.words - CONTROL_WORDS as u64
    }

    fn word_gpa(&self, index: usize) -> u64 {
        self.gpa + 8 * index as u64
    }
}

/// The trace file and what the tender knows of the guest's ring.
#[derive(Debug)]
pub struct Drain {
    file: File,
    ring: Option<RingPlace>,
    /// The clock offset, until it is in the file's header.
    offset_to_write: Option<i64>,
    /// Words consumed: the tender's own, never read back from the ring.
    tail: u64,
    /// The ring's `DROPPED` at the last drain.
    dropped_seen: u64,
    /// Records lost and not yet reported in a `Dropped` record.
    lost: u64,
    /// Bytes of records written after the header.
    written: u64,
    /// Why the ring is no longer read, once it is not.
    broken: Option<&'static str>,
    /// The words of one drain.
    buf: Vec<u8>,
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Bytes of records written.
    pub bytes: u64,
    /// Records counted as lost (dropped by the guest, damaged, or past the
    /// file's limit).
    pub lost: u64,
}

impl Drain {
    /// Creates (or truncates) the trace file at `path` and writes its
    /// header (clock offset 0 until the guest registers).
    pub fn create(path: &Path) -> io::Result<Drain> {
        let file = File::create(path)?;
        Drain::new(file)
    }

    /// A drain into `file`, which gets the header now.
    pub fn new(mut file: File) -> io::Result<Drain> {
        file.write_all(&Header::new("hvt", 0).to_bytes())?;
        Ok(Drain {
            file,
            ring: None,
            offset_to_write: None,
            tail: 0,
            dropped_seen: 0,
            lost: 0,
            written: 0,
            broken: None,
            buf: Vec::new(),
        })
    }

    /// The file's descriptor, for the sandbox.
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Why the ring stopped being read, if it did.
    pub fn broken(&self) -> Option<&'static str> {
        self.broken
    }

    /// Handles the registration `call`, made when the tender's monotonic
    /// clock read `host_ns`: the answer for the guest.
    pub fn register(
        &mut self,
        view: &SharedView,
        call: &HcTraceRegister,
        host_ns: u64,
    ) -> Solo5Result {
        if self.ring.is_some() {
            return Solo5Result::Einval;
        }
        let Some(place) = RingPlace::check(view, call.ring, call.words) else {
            return Solo5Result::Einval;
        };
        self.ring = Some(place);
        self.offset_to_write = Some((host_ns as i64).wrapping_sub(call.guest_ns as i64));
        Solo5Result::Ok
    }

    /// Copies what the guest recorded since the last drain to the file.
    /// An error is the file's (the guest's mistakes are counted, not
    /// returned).
    pub fn drain(&mut self, view: &SharedView) -> io::Result<Drained> {
        if let Some(offset) = self.offset_to_write.take() {
            self.file.write_all_at(&offset.to_le_bytes(), 16)?;
        }
        let mut drained = Drained::default();
        let Some(ring) = self.ring.filter(|_| self.broken.is_none()) else {
            return Ok(drained);
        };
        match self.take_words(view, ring) {
            Ok(()) => {}
            Err(why) => {
                self.broken = Some(why);
                self.lost = self.lost.saturating_add(1);
                self.buf.clear();
            }
        }
        let (valid, records, damaged) = valid_records(&self.buf);
        self.lost = self.lost.saturating_add(damaged);
        if self.written + valid as u64 <= MAX_FILE_BYTES {
            self.file.write_all(&self.buf[..valid])?;
            self.written += valid as u64;
            drained.bytes = valid as u64;
        } else {
            self.lost = self.lost.saturating_add(records);
        }
        if self.lost > 0 {
            drained.lost = self.lost;
            let mut record = [0u8; 24];
            record[..8].copy_from_slice(&header(Kind::Dropped, 0, 3, Track::NONE).to_le_bytes());
            record[16..].copy_from_slice(&self.lost.to_le_bytes());
            self.file.write_all(&record)?;
            self.lost = 0;
        }
        Ok(drained)
    }

    /// Reads the words written since the last drain into `buf` and frees
    /// their space; counts the guest's own drops. An error means the
    /// ring's control words no longer make sense.
    fn take_words(&mut self, view: &SharedView, ring: RingPlace) -> Result<(), &'static str> {
        self.buf.clear();
        let word = |i: usize| {
            view.read::<u64>(ring.word_gpa(i))
                .map_err(|_| "the ring is no longer readable")
        };
        if word(MAGIC)? != RING_MAGIC {
            return Err("the ring's magic word was overwritten");
        }
        let capacity = ring.capacity();
        if word(CAPACITY)? != capacity {
            return Err("the ring's capacity word disagrees with its registered size");
        }
        // One aligned 8-byte volatile load each (no torn word); x86 keeps
        // the guest's stores in order, so the records before HEAD are whole.
        let head = word(HEAD)?;
        let pending = head.wrapping_sub(self.tail);
        if head < self.tail || pending > capacity {
            // Nonsense: skip to wherever the guest says it is.
            self.lost = self.lost.saturating_add(1);
        } else if pending > 0 {
            let at = self.tail % capacity;
            let first = pending.min(capacity - at);
            let data = |index: u64| ring.word_gpa(CONTROL_WORDS) + 8 * index;
            view.copy_out(data(at), 8 * first, &mut self.buf)
                .map_err(|_| "the ring is no longer readable")?;
            if pending > first {
                view.copy_out(data(0), 8 * (pending - first), &mut self.buf)
                    .map_err(|_| "the ring is no longer readable")?;
            }
        }
        self.tail = head;
        view.write(ring.word_gpa(TAIL), &head)
            .map_err(|_| "the ring is no longer writable")?;
        let dropped = word(DROPPED)?;
        if dropped > self.dropped_seen {
            self.lost = self.lost.saturating_add(dropped - self.dropped_seen);
        }
        self.dropped_seen = dropped;
        Ok(())
    }
}

/// How many bytes at the start of `words` are whole records (padding
/// included), how many records that is (padding not), and whether a
/// damaged stretch follows (1) or not (0): the producer never splits a
/// record, so anything else is the guest's damage.
fn valid_records(words: &[u8]) -> (usize, u64, u64) {
    let mut at = 0;
    let mut records = 0;
    while at < words.len() {
        match record::parse(&words[at..]) {
            Ok((event, len)) => {
                at += len;
                records += u64::from(event.kind != Kind::Pad);
            }
            Err(_) => return (at, records, 1),
        }
    }
    (at, records, 0)
}

/// The drain, shared by the vCPU thread (which handles the registration)
/// and the [`TraceThread`].
#[derive(Debug)]
pub struct Recorder {
    drain: Mutex<Drain>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Recorder {
    /// Records into `drain`.
    pub fn new(drain: Drain) -> Arc<Recorder> {
        Arc::new(Recorder {
            drain: Mutex::new(drain),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn drain(&self) -> std::sync::MutexGuard<'_, Drain> {
        self.drain.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The trace file's descriptor.
    pub fn fd(&self) -> i32 {
        self.drain().fd()
    }

    /// [`Drain::register`], from the vCPU thread (no file I/O there: the
    /// thread writes the clock offset at its next drain).
    pub fn register(&self, view: &SharedView, call: &HcTraceRegister, host_ns: u64) -> Solo5Result {
        self.drain().register(view, call, host_ns)
    }
}

/// The thread that drains the ring while the guest runs.
#[derive(Debug)]
pub struct TraceThread {
    recorder: Arc<Recorder>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl TraceThread {
    /// Starts the thread, which installs its sandbox (`install_filter`,
    /// given the file's descriptor) before it touches guest memory.
    pub fn start(
        recorder: Arc<Recorder>,
        view: SharedView,
        install_filter: impl FnOnce(i32) -> io::Result<()> + Send + 'static,
    ) -> io::Result<TraceThread> {
        let thread_recorder = recorder.clone();
        let fd = recorder.fd();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = lamina_tender::sys::spawn_without_stop_signals(
            std::thread::Builder::new().name("trace".into()),
            move || {
                let filter = install_filter(fd);
                let failed = filter
                    .as_ref()
                    .err()
                    .map(|e| io::Error::new(e.kind(), e.to_string()));
                let _ = ready_tx.send(filter);
                if let Some(error) = failed {
                    return Err(error);
                }
                run(&thread_recorder, &view)
            },
        )?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(TraceThread {
                recorder,
                handle: Some(handle),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::other("the trace thread ended before it started")),
        }
    }

    /// Drains the ring one last time and ends the thread; the file's
    /// error, if writing it failed, and what was lost.
    pub fn stop(mut self) -> io::Result<()> {
        *self.recorder.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.recorder.wake.notify_all();
        match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the trace thread panicked")),
            None => Ok(()),
        }
    }
}

/// The thread's loop: drain, wait, until stopped; then drain once more.
fn run(recorder: &Recorder, view: &SharedView) -> io::Result<()> {
    let mut stopped = recorder.stop.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let last = *stopped;
        drop(stopped);
        recorder.drain().drain(view)?;
        if last {
            if let Some(why) = recorder.drain().broken() {
                eprintln!("lamina-hvt: trace: {why}; the records after it were not kept");
            }
            return Ok(());
        }
        stopped = recorder.stop.lock().unwrap_or_else(|e| e.into_inner());
        if !*stopped {
            stopped = recorder
                .wake
                .wait_timeout(stopped, DRAIN_INTERVAL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests;
