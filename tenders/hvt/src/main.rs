//! `lamina-hvt`: runs a Solo5 hvt unikernel in a KVM virtual machine.
//!
//! The layers, in the order a guest meets them:
//!
//! | module | what |
//! |--------|------|
//! | [`guest`] | image, memory, devices and boot info; then the vCPU loop |
//! | [`layout`] | page tables, GDT and CPU state: Solo5's, or KVM-PVM native |
//! | [`dumpcore`] | `--dumpcore=DIR`: the core file of a crashed guest |
//! | [`fault`] | the tender's IDT: a guest's exceptions reported with a backtrace |
//! | [`gdb`] | `--gdb=PORT`: the GDB remote protocol, breakpoints and steps through the stubs |
//! | [`kvm`] | the VM, its memory slot and vCPU, KVM-PVM detection |
//! | [`cpuid_cache`] | a file cache of KVM_GET_SUPPORTED_CPUID |
//! | [`hypercall`] | the hypercall handlers, every guest pointer checked |
//! | [`ring`] | the network ring's I/O thread (frames without VM exits) |
//! | [`seccomp`] | the sandbox installed before the first KVM_RUN |
//! | [`stop`] | the stop signals' handler, which cannot be missed |
//! | [`trace`] | `--trace=FILE`: the guest's trace ring drained to a file by a thread |
//!
//! Exit status: the guest's on a halt; 128 + N when signal N (SIGINT,
//! SIGTERM, SIGHUP) stopped it, as for a process that signal killed; 1 when
//! the tender fails or the guest misbehaves (a bad hypercall, a fault it
//! does not handle).
//!
//! `#![no_main]`: the C `main` below skips std's runtime set-up (see
//! [`lamina_tender::process`]), keeping only what a tender needs.
#![deny(unsafe_code)]
// Unit tests keep the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

#[allow(unsafe_code)]
mod dumpcore;
mod fault;
#[cfg(test)]
#[allow(unsafe_code)]
mod fixtures;
mod gdb;
mod guest;
mod hypercall;
#[allow(unsafe_code)]
mod kvm;
mod layout;
mod stop;

// The ring server, the sandboxes and the CPUID cache are the library's
// (`lib.rs`), for the fuzz targets; named here so that `crate::ring` and
// `crate::cpuid_cache` read as before.
use lamina_hvt::{block_ring, cpuid_cache, ring, rx, seccomp, trace};

use lamina_tender::timing::Timing;
use lamina_tender::{args, process};

const TENDER: &str = "lamina-hvt";
const FLAGS: &[(&str, &str)] = &[
    ("--x-timing", "print start-up phase timings on stderr"),
    (
        "--x-stats",
        "print VM exits and hypercalls by kind on stderr at exit",
    ),
];

lamina_tender::tender_main!(run);

#[cfg_attr(test, allow(dead_code))]
fn run() -> u8 {
    let before_main = process::start();
    // The guest's console may be a pipe its reader closes: the tender
    // carries on serving the guest, as under std's runtime.
    process::ignore_sigpipe();
    let parsed = match args::command_line(TENDER, FLAGS) {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    let mut timing = Timing::start(parsed.flags.contains(&"--x-timing"), before_main);
    match guest::run(&parsed, &mut timing) {
        // The shell sees the low 8 bits, as with Solo5's tender.
        Ok(status) => status as u8,
        Err(error) => {
            eprintln!("{TENDER}: {error}");
            error.exit_status() as u8
        }
    }
}
