//! Panics that explain themselves: the selftest unikernel's `--test=panic`
//! goes through `panic_caller`, which calls `panic_here`, which panics
//! (both `#[inline(never)]`). Through `lamina run` on spt, hvt, virtio and
//! unix, the output must give the panic's message and file:line and a
//! backtrace whose frames name `selftest::panic_here` at that line and then
//! its caller `selftest::panic_caller`: on the unikernels the guest's return
//! addresses named by `lamina run`, on unix std's own backtrace.

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

/// `lamina run -t TARGET selftest -- --test=panic`: its status and all it
/// printed.
fn panic_on(target: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let disk = format!("storage={}:1M", dir.path().join("disk.img").display());
    let output = run_lamina(&[
        "run",
        "-t",
        target,
        APP,
        "--block",
        &disk,
        "--",
        "--test=panic",
    ]);
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

fn assert_named_backtrace(target: &str, text: &str) {
    let line = panic_line();
    let place = format!("tests/guests/selftest/src/main.rs:{line}");
    let lines: Vec<&str> = text.lines().collect();
    // The guest's own line: message and location.
    let panic = find_line(&lines, 0, &["panic", "selftest panics on purpose"])
        .or_else(|| find_line(&lines, 0, &["panicked at", &place]))
        .unwrap_or_else(|| panic!("{target}: no panic message\n{text}"));
    assert!(
        text.contains(&format!("{place}:")),
        "{target}: no location {place}\n{text}"
    );
    // Then the frames: the panicking function at its line, then its caller.
    let here = find_line(&lines, panic, &["selftest::panic_here"])
        .unwrap_or_else(|| panic!("{target}: no frame for panic_here\n{text}"));
    let here_place = if target == "unix" {
        // std prints the place on the line after the function.
        lines.get(here + 1).copied().unwrap_or("")
    } else {
        lines[here]
    };
    assert!(
        here_place.contains(&place),
        "{target}: panic_here's frame is not at {place}\n{text}"
    );
    find_line(&lines, here + 1, &["selftest::panic_caller"])
        .unwrap_or_else(|| panic!("{target}: no frame for the caller after panic_here\n{text}"));
}

#[test]
fn a_panic_prints_a_named_backtrace_on_every_target() {
    let mut targets = unikernel_targets("a named backtrace");
    if tools_or_skip("a named backtrace on virtio", &["qemu-system-x86_64"]) {
        targets.push("virtio");
    }
    targets.push("unix");
    for target in targets {
        let (status, text) = panic_on(target);
        if target == "unix" {
            // The panic leaves the C main: std aborts the process.
            assert_ne!(status, Some(0), "{target}\n{text}");
        } else {
            // The target's panic status: Solo5's abort, or virtio's
            // highest status through QEMU's debug-exit device.
            let expected = if target == "virtio" { 126 } else { 255 };
            assert_eq!(status, Some(expected), "{target}\n{text}");
            assert!(
                text.contains("lamina: backtrace: 0x"),
                "{target}: the guest printed no backtrace\n{text}"
            );
        }
        assert_named_backtrace(target, &text);
    }
}
