//! # lamina-abi: the whole guest/tender contract in one small place
//!
//! Lamina's unikernels speak the Solo5 ABI, so that Lamina tenders run Solo5
//! images and Lamina images run on Solo5's tenders. This crate is that ABI as
//! data: layouts, numbers and the rules for changing them. It has no code
//! that touches memory; tenders read guest memory through their own checked
//! accessor and decode these types with `zerocopy`.
//!
//! | module | what |
//! |--------|------|
//! | [`hvt`]  | hypercall numbers and structs, the boot info (hvt ABI 2) |
//! | [`spt`]  | the boot info and memory layout of spt (spt ABI 2) |
//! | [`mft`]  | the device manifest (MFT1) |
//! | [`note`] | the ELF notes an image carries (ABI1, MFT1, Lamina's LMN1) |
//! | [`ring`] | the batched I/O ring, negotiated through `host_features` |
//! | [`block_ring`] | block requests through shared memory on hvt, negotiated the same way |
//! | [`debug_exit`] | the virtio target's exit status through QEMU's isa-debug-exit, and back in `lamina run` |
//!
//! ## Versioning
//! The hvt and spt ABI versions are Solo5's (2). Lamina never changes a
//! field's meaning; extensions are negotiated: the tender sets a bit in
//! [`hvt::BootInfo::host_features`] and fills fields appended after the
//! original 40 bytes, which older tenders leave zero (guest memory starts
//! zeroed). A guest uses an extension only when its bit is set. Per-device
//! extensions (spt included, which has no feature words) are asked for in
//! the image's LMN1 note ([`note::features`]) and granted in the device's
//! manifest entry, in bytes Solo5's tenders leave zero
//! ([`mft::net_features`], [`mft::block_features`]).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block_ring;
pub mod debug_exit;
pub mod frames;
pub mod hvt;
pub mod mft;
pub mod note;
pub mod ring;
pub mod spt;

/// Result of a Solo5 call (`solo5_result_t`), as returned in `ret` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Solo5Result {
    /// The call succeeded.
    Ok = 0,
    /// Nothing to do now (no frame waiting); try again later.
    Again = 1,
    /// Invalid argument.
    Einval = 2,
    /// Unspecified error.
    Eunspec = 3,
}

impl Solo5Result {
    /// Decodes a `ret` field; unknown values are `Eunspec`.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            0 => Solo5Result::Ok,
            1 => Solo5Result::Again,
            2 => Solo5Result::Einval,
            _ => Solo5Result::Eunspec,
        }
    }
}

/// Exit status of a guest that aborted (`solo5_abort`): 255.
pub const EXIT_ABORT: i32 = 255;

/// Lowest guest address an image may load at (both hvt and spt).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;

/// Size of the command-line buffer, including the terminating NUL.
pub const CMDLINE_SIZE: usize = 8192;

/// Page size the loaders require segment boundaries to be aligned to.
pub const PAGE_SIZE: u64 = 0x1000;
