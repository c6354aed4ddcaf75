//! `lamina-spt`: runs a Solo5 spt unikernel inside this process.
//!
//! The guest's memory is mapped at its own addresses (0x10000 to
//! `--mem`), the image is loaded with its exact protections, the boot
//! info, manifest and command line go to 0x11000, and a seccomp filter
//! that allows only the spt ABI's system calls (pinned to the guest's own
//! descriptors) is installed right before the jump to the guest's entry.
//! From then on the guest ends the process: its exit status is the
//! tender's, a fault kills it by SIGSEGV (after [`fault`]'s handler has
//! reported it with a backtrace) and a forbidden call by SIGSYS.
//!
//! `#![no_main]`: the C `main` below skips std's runtime set-up (see
//! [`lamina_tender::process`]); the guest needs none of it, and spt had to
//! undo its signal handlers before the jump.
#![deny(unsafe_code)]
// Unit tests keep the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

#[allow(unsafe_code)]
mod fault;
#[allow(unsafe_code)]
mod launch;
mod seccomp;
mod setup;

use lamina_tender::timing::Timing;
use lamina_tender::TENDER_FAILURE;
use lamina_tender::{args, process};

const TENDER: &str = "lamina-spt";
const FLAGS: &[(&str, &str)] = &[("--x-timing", "print start-up phase timings on stderr")];

lamina_tender::tender_main!(run);

#[cfg_attr(test, allow(dead_code))]
fn run() -> u8 {
    let before_main = process::start();
    let parsed = match args::command_line(TENDER, FLAGS) {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    let timing = Timing::start(parsed.flags.contains(&"--x-timing"), before_main);
    // Only returns on a tender error: on success the guest owns the process.
    let error = setup::run(&parsed, timing);
    eprintln!("{TENDER}: {error}");
    TENDER_FAILURE as u8
}
