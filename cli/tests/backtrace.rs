//! Panics that explain themselves: the selftest unikernel's `--test=panic`
//! goes through `panic_caller`, which calls `panic_here`, which panics
//! (both `#[inline(never)]`). Through `lamina run` on spt, hvt, virtio and
//! unix, the output must give the panic's message and file:line and a
//! backtrace whose frames name `selftest::panic_here` at that line and then
//! its caller `selftest::panic_caller`: on the unikernels the guest's return
//! addresses named by `lamina run`, on unix std's own backtrace.
//!
//! Faults that explain themselves: `--test=fault-null` and
//! `--test=fault-ud2` go through `fault_caller` to `fault_here`, which
//! writes to address 0 or runs `ud2`. The tender (hvt: its exception
//! stubs; spt: its signal handler) reports the exception and a backtrace
//! walked through guest memory; `lamina run` names the faulting
//! instruction as `fault_here` at the line of its `asm!`, then the caller.
//!
//! The same with `--release` on spt and hvt (a panic and a page fault):
//! the image is stripped and named from its IMAGE.debug, whose line tables
//! give the same file:line. (The release images are those
//! `tests/unikernel.rs` builds.)

mod common;

use common::*;

const APP: &str = "tests/guests/selftest";

/// The line of the `panic!` in `panic_here`, read from the source.
fn panic_line() -> usize {
    let source = std::fs::read_to_string(root().join(APP).join("src/main.rs")).unwrap();
    let start = source.find("fn panic_here(").expect("panic_here");
    let offset = start + source[start..].find("panic!(").expect("its panic!");
    source[..offset].lines().count()
}

/// The line of `fault_here`'s `asm!` that contains `instruction`.
fn fault_line(instruction: &str) -> usize {
    let source = std::fs::read_to_string(root().join(APP).join("src/main.rs")).unwrap();
    let start = source.find("fn fault_here(").expect("fault_here");
    let offset = start + source[start..].find(instruction).expect("its asm!");
    source[..offset].lines().count()
}

/// How `lamina run` builds the selftest image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Build {
    /// Without `--release`: the image has its line tables.
    Debug,
    /// `--release`: stripped, named from IMAGE.debug.
    Release,
}

/// `lamina run -t TARGET [--release] selftest -- --test=TEST`: its status
/// and all it printed.
fn run_test(target: &str, build: Build, test: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let disk = format!("storage={}:1M", dir.path().join("disk.img").display());
    let mut args = vec!["run", "-t", target];
    if build == Build::Release {
        args.push("--release");
    }
    let test = format!("--test={test}");
    args.extend([APP, "--block", &disk, "--", &test]);
    let output = run_lamina(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    (output.status.code(), text)
}

/// The index of the first line at or after `from` that contains all of
/// `parts`.
fn find_line(lines: &[&str], from: usize, parts: &[&str]) -> Option<usize> {
    (from..lines.len()).find(|&i| parts.iter().all(|p| lines[i].contains(p)))
}

fn assert_named_backtrace(target: &str, build: Build, text: &str) {
    let line = panic_line();
    let place = format!("tests/guests/selftest/src/main.rs:{line}");
    let lines: Vec<&str> = text.lines().collect();
    // The guest's own line: message and location.
    let panic = find_line(&lines, 0, &["panic", "selftest panics on purpose"])
        .or_else(|| find_line(&lines, 0, &["panicked at", &place]))
        .unwrap_or_else(|| panic!("{target} {build:?}: no panic message\n{text}"));
    assert!(
        text.contains(&format!("{place}:")),
        "{target} {build:?}: no location {place}\n{text}"
    );
    // Then the frames: the panicking function at its line, then its caller.
    let here = find_line(&lines, panic, &["selftest::panic_here"])
        .unwrap_or_else(|| panic!("{target} {build:?}: no frame for panic_here\n{text}"));
    let here_place = if target == "unix" {
        // std prints the place on the line after the function.
        lines.get(here + 1).copied().unwrap_or("")
    } else {
        lines[here]
    };
    assert!(
        here_place.contains(&place),
        "{target} {build:?}: panic_here's frame is not at {place}\n{text}"
    );
    find_line(&lines, here + 1, &["selftest::panic_caller"]).unwrap_or_else(|| {
        panic!("{target} {build:?}: no frame for the caller after panic_here\n{text}")
    });
}

#[test]
fn a_panic_prints_a_named_backtrace_on_every_target() {
    let mut targets = unikernel_targets("a named backtrace");
    if tools_or_skip("a named backtrace on virtio", &["qemu-system-x86_64"]) {
        targets.push("virtio");
    }
    targets.push("unix");
    let mut runs: Vec<(&str, Build)> = targets.iter().map(|&t| (t, Build::Debug)).collect();
    // Release images of the tenders' targets, named from IMAGE.debug.
    for &target in targets.iter().filter(|&&t| t == "spt" || t == "hvt") {
        runs.push((target, Build::Release));
    }
    for (target, build) in runs {
        let (status, text) = run_test(target, build, "panic");
        if target == "unix" {
            // The panic leaves the C main: std aborts the process.
            assert_ne!(status, Some(0), "{target}\n{text}");
        } else {
            // The target's panic status: Solo5's abort, or virtio's
            // highest status through QEMU's debug-exit device.
            let expected = if target == "virtio" { 126 } else { 255 };
            assert_eq!(status, Some(expected), "{target} {build:?}\n{text}");
            assert!(
                text.contains("lamina: backtrace: 0x"),
                "{target} {build:?}: the guest printed no backtrace\n{text}"
            );
        }
        assert_named_backtrace(target, build, &text);
    }
}

#[test]
fn a_fault_is_explained_by_the_tender_and_named() {
    let null_write = (
        "fault-null",
        "page fault (#PF) writing 0x0",
        "mov qword ptr [{0}]",
        128 + 11,
    );
    let invalid_opcode = ("fault-ud2", "invalid opcode (#UD)", "\"ud2\"", 128 + 4);
    for target in unikernel_targets("a fault explained by the tender") {
        for (build, (test, exception, instruction, spt_status)) in [
            (Build::Debug, null_write),
            (Build::Debug, invalid_opcode),
            (Build::Release, null_write),
        ] {
            let (status, text) = run_test(target, build, test);
            // spt dies by the signal, as before the report; hvt fails.
            let expected = if target == "spt" { spt_status } else { 1 };
            assert_eq!(status, Some(expected), "{target} {build:?} {test}\n{text}");
            let lines: Vec<&str> = text.lines().collect();
            let report = find_line(
                &lines,
                0,
                &[
                    &format!("lamina-{target}: guest fault: {exception}"),
                    " at rip=0x",
                ],
            )
            .unwrap_or_else(|| panic!("{target} {build:?} {test}: no fault report\n{text}"));
            assert!(
                lines
                    .get(report + 1)
                    .is_some_and(|l| l.starts_with("lamina: backtrace: 0x")),
                "{target} {build:?} {test}: the report has no backtrace\n{text}"
            );
            let place = format!(
                "tests/guests/selftest/src/main.rs:{}",
                fault_line(instruction)
            );
            let named = find_line(
                &lines,
                report,
                &[
                    "lamina: the fault, named:",
                    "selftest::fault_here at",
                    &place,
                ],
            )
            .unwrap_or_else(|| {
                panic!("{target} {build:?} {test}: the fault is not named fault_here at {place}\n{text}")
            });
            find_line(&lines, named, &["#0 0x", "selftest::fault_caller"]).unwrap_or_else(|| {
                panic!("{target} {build:?} {test}: no frame for fault_caller\n{text}")
            });
        }
    }
}
