//! The [`Random`] suite: output does not repeat, fills exactly the buffer
//! given, and looks uniform (a coarse test that catches a constant, a
//! counter or a broken seed, not a proof of quality).

use crate::{ensure, Report};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use lamina_core::device::Random;

/// Runs the suite.
pub fn run<R: Random>(random: &R) -> Report {
    let mut report = Report::new("Random");
    let draws: Vec<u64> = (0..64).map(|_| random.next_u64()).collect();
    let mut sorted = draws.clone();
    sorted.sort_unstable();
    sorted.dedup();
    report.record(
        "64 draws of next_u64 do not repeat",
        ensure(sorted.len() == draws.len(), || {
            format!("{} repeats among {draws:x?}", draws.len() - sorted.len())
        }),
    );
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    random.fill(&mut a);
    random.fill(&mut b);
    report.record(
        "two fills differ",
        ensure(a != b && a != [0; 32], || format!("{a:x?} then {b:x?}")),
    );
    let mut guarded = [0xa5u8; 64];
    random.fill(&mut guarded[16..48]);
    let untouched = guarded[..16]
        .iter()
        .chain(&guarded[48..])
        .all(|&x| x == 0xa5);
    report.record(
        "fill writes its buffer and nothing else",
        ensure(untouched && guarded[16..48] != [0xa5; 32], || {
            format!("{guarded:x?}")
        }),
    );
    random.fill(&mut []);
    report.record("an empty fill returns", Ok(()));
    // 64 KiB: each byte value is expected 256 times; a uniform source stays
    // within 256 +- 100 (over 6 standard deviations) for every value.
    let mut bytes = vec![0u8; 65536];
    random.fill(&mut bytes);
    let mut counts = [0u32; 256];
    for &b in &bytes {
        counts[b as usize] += 1;
    }
    let (min, max) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    report.record(
        "byte values are evenly spread",
        ensure(min >= 156 && max <= 356, || {
            format!("byte counts range {min}..{max} in 64 KiB, expected about 256")
        }),
    );
    report
}
