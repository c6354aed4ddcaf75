//! The parts of `lamina-hvt` that take no KVM: the network ring's server
//! and the sandboxes. A library so that the ring's entry serving, which
//! reads whatever the guest wrote, is reachable from a fuzz target
//! (`fuzz/fuzz_targets/hvt_ring.rs`); the binary (`main.rs`) uses it.
#![deny(unsafe_code)]

#[cfg(test)]
#[allow(unsafe_code, dead_code)]
mod fixtures;
pub mod ring;
pub mod rx;
pub mod seccomp;
