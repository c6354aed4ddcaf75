//! lamina-hvt runs Solo5's own test unikernels as solo5-hvt does.
//!
//! The images come from a Solo5 build in /tmp/solo5/src (or
//! $LAMINA_SOLO5_SRC); CI does not build Solo5, so without them these
//! tests record what they skipped and pass (the one skip CI allows);
//! without /dev/kvm they fail under CI as any KVM test does. With
//! Solo5's `solo5-hvt` built too, each output is compared with its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../common/tests/support/solo5.rs"]
mod support;
use support::stable;

/// Solo5's tree with its hvt tests built, if there is one (else a
/// recorded skip, allowed under CI) and /dev/kvm opens (else a skip that
/// fails under CI, like every other test needing KVM).
fn solo5_src() -> Option<PathBuf> {
    let src = support::solo5_src("hvt")?;
    lamina_test_support::kvm_or_skip("Solo5's hvt tests").then_some(src)
}

fn check(src: &Path, test: &str, extra: &[String], status: i32) -> Output {
    let image = src.join(format!("tests/test_{test}/test_{test}.hvt"));
    let mut args: Vec<String> = vec!["--mem=32".into()];
    args.extend_from_slice(extra);
    args.push(image.display().to_string());
    args.push("Hello_Solo5".into());
    let ours = Command::new(env!("CARGO_BIN_EXE_lamina-hvt"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(ours.status.code(), Some(status), "{test}: {ours:?}");
    if status == 0 {
        assert!(
            String::from_utf8_lossy(&ours.stdout).contains("SUCCESS"),
            "{test}: {ours:?}"
        );
    }
    let theirs = src.join("tenders/hvt/solo5-hvt");
    if theirs.exists() {
        let reference = Command::new(&theirs).args(&args).output().unwrap();
        assert_eq!(ours.status.code(), reference.status.code(), "{test}");
        assert_eq!(stable(&ours.stdout), stable(&reference.stdout), "{test}");
    } else {
        lamina_test_support::skip_allowed(
            &format!("comparing {test} with solo5-hvt"),
            &format!(
                "solo5-hvt is not built in {} (checked the status only)",
                src.display()
            ),
        );
    }
    println!("{test}: ok (status {status})");
    ours
}

#[test]
fn solo5_tests_pass() {
    let Some(src) = solo5_src() else { return };
    for test in ["hello", "globals", "tls", "quiet", "time"] {
        check(&src, test, &[], 0);
    }
}

#[test]
fn solo5_block_test_passes() {
    let Some(src) = solo5_src() else { return };
    let disk = support::scratch_disk("hvt");
    check(
        &src,
        "blk",
        &[format!("--block:storage={}", disk.display())],
        0,
    );
    std::fs::remove_file(disk).unwrap();
}

#[test]
fn solo5_faults_end_the_guest_cleanly() {
    let Some(src) = solo5_src() else { return };
    // The guest's own trap handler reports these and aborts.
    for test in ["ssp", "zeropage", "notls", "exception"] {
        check(&src, test, &[], 255);
    }
    // test_fpu uses SSE: Solo5's layout runs under KVM-PVM's emulator,
    // which cannot decode it (solo5-hvt fails the same way there).
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let pvm = !cpuinfo.contains(" vmx") && !cpuinfo.contains(" svm");
    check(&src, "fpu", &[], if pvm { 1 } else { 0 });
    // A write to its text: the tender stops it with a message, exit 1.
    let out = check(&src, "xnow", &[], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("read-only memory") || stderr.contains("translation fault"),
        "{stderr}"
    );
}
