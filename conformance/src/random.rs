//! The [`Random`] suite: output does not repeat, fills every byte of the
//! buffer given, and looks uniform (a coarse test that catches a constant, a
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
    // A fill that writes whole words only, or stops short, leaves the tail
    // of an odd-sized buffer as it was: every byte of buffers of awkward
    // sizes must come out non-zero in at least one of four fills from
    // zeroes (a random byte is zero four times in a row with p = 2^-32).
    let sizes = [1usize, 7, 13, 33, 100];
    let unwritten: Vec<(usize, usize)> = sizes
        .iter()
        .flat_map(|&size| {
            let mut written = vec![false; size];
            for _ in 0..4 {
                let mut buf = vec![0u8; size];
                random.fill(&mut buf);
                for (seen, &byte) in written.iter_mut().zip(&buf) {
                    *seen |= byte != 0;
                }
            }
            written
                .into_iter()
                .enumerate()
                .filter(|&(_, seen)| !seen)
                .map(move |(at, _)| (size, at))
        })
        .collect();
    report.record(
        "fill writes every byte of a buffer of any size",
        ensure(unwritten.is_empty(), || {
            format!("(size, byte) never written: {unwritten:?}")
        }),
    );
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
