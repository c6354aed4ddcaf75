//! The host side of the compute benchmark: runs the same loop as
//! `selftest --test=compute` and prints the time it took.
//!
//! usage: std-compute ITERATIONS

include!("../../../compute_loop.rs");

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000_000);
    let start = std::time::Instant::now();
    let result = compute_loop(std::hint::black_box(iterations), 0x1234_5678);
    let elapsed = start.elapsed();
    println!(
        "compute: {iterations} iterations in {} us (result {result:#x})",
        elapsed.as_micros()
    );
}
