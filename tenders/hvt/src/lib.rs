//! The parts of `lamina-hvt` that take no KVM: the network and block rings' servers,
//! the sandboxes, the CPUID cache file and the trace ring's drain. A library so that the ring's
//! entry serving, which reads whatever the guest wrote, and the cache
//! file's parser are reachable from fuzz targets
//! (`fuzz/fuzz_targets/hvt_ring.rs`, `cpuid_cache.rs`); the binary
//! (`main.rs`) uses it.
#![deny(unsafe_code)]

pub mod block_ring;
pub mod cpuid_cache;
#[cfg(test)]
#[allow(unsafe_code, dead_code)]
mod fixtures;
pub mod ring;
pub mod rx;
pub mod seccomp;
pub mod spin;
pub mod trace;
