//! The drain against rings in real guest memory (a [`GuestMemory`]
//! mapping): a guest's records reach the file in order across the ring's
//! wrap, and a guest that writes garbage loses records, never the tender.

use super::*;
use lamina_tender::mem::GuestMemory;
use lamina_trace::file::{FileError, Records};
use lamina_trace::Ring;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the ring goes in guest memory.
const RING_GPA: u64 = 0x10_0000;
/// Its words: control words and the smallest capacity.
const WORDS: usize = CONTROL_WORDS + MIN_CAPACITY;

fn temp_file(name: &str) -> (std::path::PathBuf, Drain) {
    let path = std::env::temp_dir().join(format!(
        "lamina-hvt-trace-{}-{name}.lmtrace",
        std::process::id()
    ));
    let drain = Drain::create(&path).unwrap();
    (path, drain)
}

fn registration(ring: u64, words: u64) -> HcTraceRegister {
    HcTraceRegister {
        ring,
        words,
        guest_ns: 1_000,
        ..Default::default()
    }
}

/// Copies the producer's words into guest memory, as if it wrote there.
fn publish(view: &SharedView, words: &[AtomicU64]) {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
        .collect();
    view.copy_in(RING_GPA, &bytes).unwrap();
}

/// Gives the producer the consumer's TAIL back from guest memory.
fn take_tail(view: &SharedView, words: &[AtomicU64]) {
    let tail: u64 = view.read(RING_GPA + 8 * TAIL as u64).unwrap();
    words[TAIL].store(tail, Ordering::Relaxed);
}

/// The file's records as (kind, time, first fixed word), and its error.
fn read_back(path: &Path) -> (Header, Vec<(Kind, u64, u64)>, Option<FileError>) {
    let bytes = std::fs::read(path).unwrap();
    let (header, records) = Records::new(&bytes).unwrap();
    let mut out = Vec::new();
    let mut error = None;
    for record in records {
        match record {
            Ok(e) => out.push((e.kind, e.time, e.word(0))),
            Err(e) => error = Some(e),
        }
    }
    (header, out, error)
}

#[test]
fn a_guests_records_reach_the_file_in_order_across_the_wrap() {
    let mem = GuestMemory::anywhere(4 << 20).unwrap();
    let view = mem.shared_view();
    let (path, mut drain) = temp_file("order");
    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let ring = Ring::new(&words).unwrap();
    publish(&view, &words);
    let answer = drain.register(&view, &registration(RING_GPA, WORDS as u64), 5_000);
    assert_eq!(answer, Solo5Result::Ok);
    let mut expected = Vec::new();
    for t in 0..3000u64 {
        let name = "n".repeat((t % 23) as usize);
        assert!(ring.push(Kind::Instant, 0, Track::MAIN, t, &[], &[&name, ""]));
        expected.push((Kind::Instant, t, 0));
        if t % 50 == 49 {
            publish(&view, &words);
            let drained = drain.drain(&view).unwrap();
            assert_eq!(drained.lost, 0);
            take_tail(&view, &words);
        }
    }
    publish(&view, &words);
    drain.drain(&view).unwrap();
    let (header, records, error) = read_back(&path);
    assert_eq!(error, None);
    assert_eq!(header.target_name(), "hvt");
    assert_eq!(header.clock_offset, 4_000, "host 5000 ns at guest 1000 ns");
    assert_eq!(records, expected);
    let _ = std::fs::remove_file(path);
}

#[test]
fn records_the_guest_dropped_are_counted_in_the_file() {
    let mem = GuestMemory::anywhere(4 << 20).unwrap();
    let view = mem.shared_view();
    let (path, mut drain) = temp_file("dropped");
    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let ring = Ring::new(&words).unwrap();
    let pushed = (0..2000)
        .filter(|&t| ring.push(Kind::Poll, 0, Track::MAIN, t, &[], &[]))
        .count() as u64;
    publish(&view, &words);
    drain.register(&view, &registration(RING_GPA, WORDS as u64), 0);
    assert_eq!(drain.drain(&view).unwrap().lost, 2000 - pushed);
    let (_, records, error) = read_back(&path);
    assert_eq!(error, None);
    assert_eq!(records.len() as u64, pushed + 1);
    assert_eq!(*records.last().unwrap(), (Kind::Dropped, 0, 2000 - pushed));
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_ring_outside_guest_memory_or_misshapen_is_refused() {
    let mem = GuestMemory::anywhere(4 << 20).unwrap();
    let view = mem.shared_view();
    let (path, mut drain) = temp_file("refused");
    let words = WORDS as u64;
    for (gpa, words) in [
        (RING_GPA + 4, words),              // misaligned
        (RING_GPA, 100),                    // too small
        ((4 << 20) - 8 * words + 8, words), // past the end
        (u64::MAX - 7, words),              // overflows
        (RING_GPA, u64::MAX / 4),           // its size overflows
        (0, (MAX_RING_BYTES / 8) + 1),      // too large
    ] {
        assert_eq!(
            drain.register(&view, &registration(gpa, words), 0),
            Solo5Result::Einval,
            "{gpa:#x} {words}"
        );
    }
    assert_eq!(
        drain.register(&view, &registration(RING_GPA, words), 0),
        Solo5Result::Ok
    );
    assert_eq!(
        drain.register(&view, &registration(RING_GPA, words), 0),
        Solo5Result::Einval,
        "a second ring"
    );
    let _ = std::fs::remove_file(path);
}

/// A small deterministic generator of garbage.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_guest_that_scribbles_on_its_ring_loses_records_and_the_file_stays_readable() {
    let mem = GuestMemory::anywhere(4 << 20).unwrap();
    let view = mem.shared_view();
    let (path, mut drain) = temp_file("garbage");
    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let ring = Ring::new(&words).unwrap();
    for t in 0..10 {
        ring.push(Kind::Poll, 0, Track::MAIN, t, &[], &[]);
    }
    publish(&view, &words);
    drain.register(&view, &registration(RING_GPA, WORDS as u64), 0);
    assert_eq!(drain.drain(&view).unwrap().lost, 0);
    let mut garbage = Garbage(0x9e37_79b9_7f4a_7c15);
    let mut lost = 0;
    for round in 0..200u64 {
        // Random data words, and a HEAD that is sometimes plausible.
        for _ in 0..64 {
            let at = CONTROL_WORDS + (garbage.next() % MIN_CAPACITY as u64) as usize;
            view.write(RING_GPA + 8 * at as u64, &garbage.next())
                .unwrap();
        }
        let head = match round % 4 {
            0 => garbage.next(),
            1 => garbage.next() % (2 * MIN_CAPACITY as u64),
            2 => 0,
            _ => u64::MAX,
        };
        view.write(RING_GPA + 8 * HEAD as u64, &head).unwrap();
        view.write(RING_GPA + 8 * DROPPED as u64, &garbage.next())
            .unwrap();
        lost = drain.drain(&view).unwrap().lost.saturating_add(lost);
    }
    assert!(lost > 0);
    let (_, records, error) = read_back(&path);
    assert_eq!(error, None, "the file reads to its end");
    assert!(records.iter().take(10).all(|r| r.0 == Kind::Poll));
    // At most a ring's worth and a Dropped record per drain.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 32 + 201 * (8 * MIN_CAPACITY as u64 + 24), "{size}");
    // A broken magic word ends the recording; nothing more is written.
    view.write(RING_GPA, &0u64).unwrap();
    assert_eq!(drain.drain(&view).unwrap().lost, 1);
    assert!(drain.broken().is_some());
    let before = std::fs::metadata(&path).unwrap().len();
    ring.push(Kind::Poll, 0, Track::MAIN, 1, &[], &[]);
    publish(&view, &words);
    assert_eq!(drain.drain(&view).unwrap(), Drained::default());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    let _ = std::fs::remove_file(path);
}
