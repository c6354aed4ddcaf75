//! lamina-spt runs Solo5's own test unikernels as solo5-spt does.
//!
//! The images come from a Solo5 build in /tmp/solo5/src (or
//! $LAMINA_SOLO5_SRC); CI does not build Solo5, so without them these
//! tests record what they skipped and pass (the one skip CI allows). With Solo5's `solo5-spt` built
//! too, each output is compared with its output, line for line.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../common/tests/support/solo5.rs"]
mod support;
use support::stable;

fn solo5_src() -> Option<PathBuf> {
    support::solo5_src("spt")
}

/// What the guest's status must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Exit(i32),
    Signal(i32),
}

fn check(src: &Path, test: &str, extra: &[String], expect: Expect) {
    let image = src.join(format!("tests/test_{test}/test_{test}.spt"));
    let mut args: Vec<String> = vec!["--mem=32".into()];
    args.extend_from_slice(extra);
    args.push(image.display().to_string());
    args.push("Hello_Solo5".into());
    let ours: Output = Command::new(env!("CARGO_BIN_EXE_lamina-spt"))
        .args(&args)
        .output()
        .unwrap();
    match expect {
        Expect::Exit(code) => assert_eq!(ours.status.code(), Some(code), "{test}: {ours:?}"),
        Expect::Signal(signal) => {
            assert_eq!(ours.status.signal(), Some(signal), "{test}: {ours:?}")
        }
    }
    if matches!(expect, Expect::Exit(0)) {
        assert!(
            String::from_utf8_lossy(&ours.stdout).contains("SUCCESS"),
            "{test}: {ours:?}"
        );
    }
    let theirs = src.join("tenders/spt/solo5-spt");
    if theirs.exists() {
        let reference = Command::new(&theirs).args(&args).output().unwrap();
        assert_eq!(ours.status.code(), reference.status.code(), "{test}");
        assert_eq!(ours.status.signal(), reference.status.signal(), "{test}");
        assert_eq!(stable(&ours.stdout), stable(&reference.stdout), "{test}");
    } else {
        lamina_test_support::skip_allowed(
            &format!("comparing {test} with solo5-spt"),
            &format!(
                "solo5-spt is not built in {} (checked the status and SUCCESS only)",
                src.display()
            ),
        );
    }
    println!("{test}: ok ({expect:?})");
}

#[test]
fn solo5_tests_pass() {
    let Some(src) = solo5_src() else { return };
    for test in ["hello", "globals", "fpu", "tls", "quiet", "time"] {
        check(&src, test, &[], Expect::Exit(0));
    }
    check(&src, "ssp", &[], Expect::Exit(255));
}

#[test]
fn solo5_block_test_passes() {
    let Some(src) = solo5_src() else { return };
    let disk = support::scratch_disk("spt");
    check(
        &src,
        "blk",
        &[format!("--block:storage={}", disk.display())],
        Expect::Exit(0),
    );
    std::fs::remove_file(disk).unwrap();
}

#[test]
fn solo5_faulting_tests_die_by_their_signal() {
    let Some(src) = solo5_src() else { return };
    check(&src, "seccomp", &[], Expect::Signal(libc::SIGSYS));
    for test in ["xnow", "wnox", "zeropage", "notls", "exception"] {
        check(&src, test, &[], Expect::Signal(libc::SIGSEGV));
    }
}
