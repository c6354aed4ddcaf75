//! The peer for boot benchmarks: a plain std Rust program that prints one
//! line, as `hello --times=1` does, and exits 0.

fn main() {
    println!("Hello from Lamina (1/1)");
}
