//! The hvt tender's trace drain (`lamina_hvt::trace`, `--trace=FILE`)
//! against a ring the guest made up: its registration (address, size) and
//! everything in it (magic, capacity, HEAD, DROPPED and the records),
//! changed between drains as a running guest would.
//!
//! Input: the ring's address / 8 (u16), its data words beyond the least
//! (u8), a flag byte (bit 0: start from a well-formed ring: magic and
//! capacity right, HEAD and TAIL 0), then steps of 9 bytes: an action byte
//! and a 64-bit value. Action % 4: 0 stores the value as HEAD, 1 as
//! DROPPED, 2 at data word (action / 4), 3 drains.
//!
//! Checked besides no panic: a refused registration leaves nothing to
//! drain; the file always reads to its end as records (the tender writes
//! only records it parsed, and its own Dropped records); it grows by at
//! most a ring's data and a Dropped record per drain.
#![no_main]

use lamina_abi::hvt::HcTraceRegister;
use lamina_abi::Solo5Result;
use lamina_hvt::trace::{Drain, RingPlace};
use lamina_tender::mem::GuestMemory;
use lamina_trace::file::{Records, HEADER_LEN};
use lamina_trace::ring::{CAPACITY, CONTROL_WORDS, DROPPED, HEAD, MAGIC, MIN_CAPACITY, RING_MAGIC};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Guest memory: room for the largest ring the input can describe.
const MEM: u64 = 1 << 20;

/// The trace file, one per process: in memory (/dev/shm) where there is
/// one. On a disk, the file the drain truncates at every execution was
/// written back when closed: 40% of an execution.
static FILE: OnceLock<PathBuf> = OnceLock::new();

fn file() -> &'static PathBuf {
    FILE.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // SAFETY: registers a function that takes no arguments and only
        // removes the file, for when the fuzzer exits.
        unsafe { libc::atexit(remove_file) };
        dir.join(format!("lamina-fuzz-trace-{}", std::process::id()))
    })
}

/// Removes the trace file when the fuzzer exits (not after a crash: the
/// file is then what the drain wrote last).
extern "C" fn remove_file() {
    if let Some(path) = FILE.get() {
        let _ = std::fs::remove_file(path);
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 4 {
        return;
    }
    let gpa = u64::from(u16::from_le_bytes([bytes[0], bytes[1]])) * 8;
    let words = (CONTROL_WORDS + MIN_CAPACITY + usize::from(bytes[2])) as u64;
    let well_formed = bytes[3] & 1 != 0;
    let steps = &bytes[4..];

    let mem = GuestMemory::anywhere(MEM).expect("guest memory");
    let view = mem.shared_view();
    let inside = gpa + 8 * words <= MEM;
    if well_formed && inside {
        view.write(gpa + 8 * MAGIC as u64, &RING_MAGIC).unwrap();
        view.write(gpa + 8 * CAPACITY as u64, &(words - CONTROL_WORDS as u64)).unwrap();
    }
    let mut drain = Drain::create(file()).expect("trace file");
    let call = HcTraceRegister {
        ring: gpa,
        words,
        guest_ns: 0,
        ..Default::default()
    };
    let answer = drain.register(&view, &call, 0);
    assert_eq!(answer == Solo5Result::Ok, RingPlace::check(&view, gpa, words).is_some());
    assert_eq!(answer == Solo5Result::Ok, inside);

    let capacity = words - CONTROL_WORDS as u64;
    let mut drains = 0u64;
    for step in steps.chunks_exact(9) {
        let value = u64::from_le_bytes(step[1..9].try_into().unwrap());
        let word = |index: u64| gpa + 8 * index;
        match step[0] % 4 {
            0 => {
                let _ = view.write(word(HEAD as u64), &value);
            }
            1 => {
                let _ = view.write(word(DROPPED as u64), &value);
            }
            2 => {
                let at = CONTROL_WORDS as u64 + u64::from(step[0] / 4) % capacity;
                let _ = view.write(word(at), &value);
            }
            _ => {
                let drained = drain.drain(&view).expect("the file is writable");
                if answer != Solo5Result::Ok {
                    assert_eq!(drained.bytes, 0);
                }
                drains += 1;
            }
        }
    }
    drain.drain(&view).expect("the file is writable");
    drains += 1;
    drop(drain);

    let written = std::fs::read(file()).expect("trace file");
    assert!(
        written.len() as u64 <= HEADER_LEN as u64 + drains * (8 * capacity + 24),
        "{} bytes after {drains} drains",
        written.len()
    );
    let (_, records) = Records::new(&written).expect("the header");
    for record in records {
        record.expect("every record the tender wrote reads back");
    }
});
