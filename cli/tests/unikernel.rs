//! The unikernel targets through the `lamina` command and the tenders:
//! hello and the selftest unikernel on spt and hvt, and the tenders' answers
//! to bad images, missing devices and hostile guests.

mod common;

use common::*;
use std::process::{Command, Output};

/// Whether hvt can run here; says so when it cannot.
fn kvm_available(test: &str) -> bool {
    unikernel_targets(test).contains(&"hvt")
}

fn targets(test: &str) -> Vec<&'static str> {
    unikernel_targets(test)
}

fn disk(sectors: u64) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(sectors * 512).unwrap();
    file
}

fn selftest(target: &str, args: &[&str]) -> Output {
    let disk = disk(2048);
    let storage = format!("--block:storage={}", disk.path().display());
    let mut command = Command::new(tender(target));
    command
        .args(["--mem=32", &storage])
        .arg(image(target, "tests/guests/selftest"))
        .args(args);
    let output = command.output().unwrap();
    eprintln!(
        "--- {target} selftest {args:?}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn hello_runs_through_lamina_on_spt_and_hvt() {
    for target in targets("hello") {
        let output = run_lamina(&[
            "run",
            "-t",
            target,
            "hello",
            "--",
            "--greeting=Hi",
            "--times=2",
        ]);
        assert_eq!(output.status.code(), Some(0), "{target}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "Hi (1/2)\nHi (2/2)\n",
            "{target}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("running hello on {target}")),
            "{stderr}"
        );
        // A bad boot argument reaches the guest's parser: message, status 2.
        let output = run_lamina(&["run", "-t", target, "hello", "--", "--colour=red"]);
        assert_eq!(output.status.code(), Some(2), "{target}");
        assert!(
            text(&output).contains("unknown argument '--colour'"),
            "{target}"
        );
    }
}

/// `lamina new`, then the same source on a unikernel target (hvt where
/// KVM works, else spt): the image's manifest is the declaration, so the
/// tender insists on the declared disk, and with it the application runs.
#[test]
fn a_new_project_runs_as_a_unikernel_with_the_devices_it_declares() {
    let target = *targets("new project").last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("fresh");
    let app = app.to_str().unwrap();
    assert!(run_lamina(&["new", "fresh", "--path", app])
        .status
        .success());
    let main_rs = dir.path().join("fresh/src/main.rs");
    let source = std::fs::read_to_string(&main_rs).unwrap();
    let source = source.replace(
        "        console: Console,\n",
        "        console: Console,\n        disk: Block,\n",
    );
    std::fs::write(&main_rs, source).unwrap();

    let output = run_lamina(&["run", "-t", target, app, "--", "--times=1"]);
    assert_eq!(output.status.code(), Some(1), "{target}: {}", text(&output));
    assert!(
        text(&output).contains("Device 'disk' of type BLOCK_BASIC declared but not attached"),
        "{target}: {}",
        text(&output)
    );

    let disk = disk(16);
    let block = format!("--block:disk={}", disk.path().display());
    let output = run_lamina(&[
        "run",
        "-t",
        target,
        app,
        "--",
        &block,
        "--who=unikernel",
        "--times=1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{target}: {}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hello, unikernel! (1/1)\n",
        "{target}"
    );
}

#[test]
fn devices_work_inside_the_unikernel() {
    for target in targets("devices") {
        for test in ["clock", "random", "block", "float"] {
            let output = selftest(target, &[&format!("--test={test}")]);
            assert_eq!(output.status.code(), Some(0), "{target} {test}");
            assert!(
                text(&output).contains(&format!("selftest {test}: ok")),
                "{target} {test}"
            );
        }
    }
}

#[test]
fn exit_status_and_panics_reach_the_host() {
    for target in targets("exit") {
        assert_eq!(
            selftest(target, &["--test=exit", "--status=7"])
                .status
                .code(),
            Some(7),
            "{target}"
        );
        let output = selftest(target, &["--test=panic"]);
        assert_eq!(output.status.code(), Some(255), "{target}");
        let text = text(&output);
        assert!(
            text.contains("panic: selftest panics on purpose at tests/guests/selftest/src/main.rs"),
            "{text}"
        );
    }
}

/// A hostile act ends the guest from outside with a non-zero status, and
/// the tender says why instead of crashing.
fn assert_stopped(target: &str, test: &str) -> String {
    let output = selftest(target, &[&format!("--test={test}")]);
    let text = text(&output);
    assert!(
        !text.contains(": ok"),
        "{target} {test}: the attack succeeded\n{text}"
    );
    assert!(
        !text.contains("let '"),
        "{target} {test}: the tender let it through\n{text}"
    );
    assert_ne!(output.status.code(), Some(0), "{target} {test}");
    text
}

#[test]
fn hostile_guests_are_stopped_on_hvt() {
    if !kvm_available("hostile_guests_are_stopped_on_hvt") {
        return;
    }
    for test in [
        "write-text",
        "write-rodata",
        "bad-pointer",
        "overflow",
        "bad-port",
    ] {
        let output = selftest("hvt", &[&format!("--test={test}")]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "hvt {test}: the tender must end the guest with status 1"
        );
        assert_stopped("hvt", test);
    }
    // An out-of-range block request is an error answer, not the end.
    let output = selftest("hvt", &["--test=bad-block"]);
    assert!(
        text(&output).contains("the tender survived (expected)"),
        "{}",
        text(&output)
    );
}

#[test]
fn hostile_guests_are_stopped_on_spt() {
    use std::os::unix::process::ExitStatusExt;
    for test in ["syscall", "bad-block"] {
        let output = selftest("spt", &[&format!("--test={test}")]);
        assert_stopped("spt", test);
        // The seccomp filter kills the process: SIGSYS, or the status the
        // tender reports for it.
        let killed = output.status.signal() == Some(31) || output.status.code() == Some(159);
        assert!(killed, "spt {test}: {:?}", output.status);
    }
    for test in ["write-text", "write-rodata"] {
        let output = selftest("spt", &[&format!("--test={test}")]);
        assert_stopped("spt", test);
        assert!(output.status.signal() == Some(11) || output.status.code().is_some_and(|c| c != 0));
    }
}

/// Runs a tender on `image` with `args` and returns its status and stderr.
fn tender_on(target: &str, image: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let output = Command::new(tender(target))
        .arg("--mem=32")
        .args(args)
        .arg(image)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        None,
        "{target} crashed on {}",
        image.display()
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tenders_refuse_bad_images_and_devices_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for target in targets("bad images") {
        let good = image(target, "tests/guests/selftest");
        let bytes = std::fs::read(&good).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("truncated", bytes[..100].to_vec()),
            ("half", bytes[..bytes.len() / 2].to_vec()),
            ("not-elf", b"#!/bin/sh\necho hi\n".to_vec()),
            ("corrupt-header", {
                let mut b = bytes.clone();
                b[16] = 3; // e_type: ET_DYN
                b
            }),
            ("corrupt-phoff", {
                let mut b = bytes.clone();
                b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            }),
        ];
        for (name, content) in cases {
            let path = dir.path().join(format!("{target}-{name}"));
            std::fs::write(&path, content).unwrap();
            let (status, stderr) = tender_on(target, &path, &[]);
            assert_eq!(status, Some(1), "{target} {name}: {stderr}");
            assert!(!stderr.trim().is_empty(), "{target} {name}: no message");
        }
        // A Linux program is not a unikernel: no Solo5 notes.
        let (status, stderr) = tender_on(target, &tender(target), &[]);
        assert_eq!(status, Some(1), "{stderr}");
        // The manifest declares block:storage; not attaching it is an error.
        let (status, stderr) = tender_on(target, &good, &[]);
        assert_eq!(status, Some(1));
        assert!(stderr.contains("storage"), "{target}: {stderr}");
        // A block file that is not whole sectors is refused.
        let odd = dir.path().join("odd.img");
        std::fs::write(&odd, vec![0u8; 1000]).unwrap();
        let (status, stderr) = tender_on(
            target,
            &good,
            &[&format!("--block:storage={}", odd.display())],
        );
        assert_eq!(status, Some(1), "{target}: {stderr}");
        // A device the image does not declare is refused.
        let storage = disk(16);
        let storage = format!("--block:storage={}", storage.path().display());
        let other = format!("--block:other={}", odd.display());
        let (status, stderr) = tender_on(target, &good, &[&storage, &other]);
        assert_eq!(status, Some(1), "{target}: {stderr}");
    }
}
