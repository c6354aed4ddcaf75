//! # lamina-tender: what Lamina's tenders share
//!
//! A tender loads a unikernel image, gives it memory and devices, and
//! serves it. `lamina-spt` runs the guest inside its own seccomp-sandboxed
//! process; `lamina-hvt` runs it in a KVM virtual machine. Both speak the
//! Solo5 ABI ([`lamina_abi`]) and share everything here:
//!
//! | module | what |
//! |--------|------|
//! | [`mem`] | guest memory and THE checked (address, length) to host memory function, volatile ranges only |
//! | [`elf`] | the ELF64 loader and the Solo5 image rules |
//! | [`image`] | reading an image file: bytes, ELF, notes, one error naming the file |
//! | [`notes`] | the ABI1, MFT1 and LMN1 notes an image carries |
//! | [`core_dump`] | ELF core files of a crashed guest, for gdb |
//! | [`fault`] | a guest fault's report and its frame-pointer backtrace, without allocating |
//! | [`args`] | the tender command line, as Solo5's tenders take it |
//! | [`devices`] | manifest plus options: attached block and net devices |
//! | [`sandbox`] | what the seccomp filters share |
//! | [`sys`] | tap, epoll and timerfd system calls |
//! | [`timing`] | start-up phase timings (`--x-timing`) |
//! | [`process`] | process start-up without std's runtime (the tenders are `#![no_main]`) |
//! | [`elf_writer`] | small ELF images for tests and hand-assembled guests |
//!
//! `unsafe` lives in [`mem`], [`sys`] and [`process`] only.
#![warn(missing_docs)]

pub mod args;
pub mod core_dump;
pub mod devices;
pub mod elf;
pub mod elf_contents;
pub mod elf_writer;
pub mod fault;
pub mod image;
pub mod mem;
pub mod notes;
pub mod process;
pub mod sandbox;
pub mod sys;
pub mod timing;

/// Exit status of a tender that fails (as opposed to its guest's status).
pub const TENDER_FAILURE: i32 = 1;

/// Exit status of a tender given a bad command line (an unknown option, a
/// malformed value), as for a unikernel's bad boot argument.
pub const TENDER_USAGE: i32 = 2;
