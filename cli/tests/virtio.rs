//! The virtio target under QEMU (`-M microvm`, software emulation): hello
//! boots as a kernel through its PVH note, prints on the serial console and
//! exits with its status through isa-debug-exit; a bad command line gives
//! status 2 and the parser's message. Skipped, saying so, where
//! `qemu-system-x86_64` is not installed (`scripts/setup.sh` installs it).

mod common;

use common::*;
use std::process::Command;
use std::time::Instant;

fn qemu_available() -> bool {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: qemu-system-x86_64 is not installed (scripts/setup.sh installs it)");
    }
    found
}

#[test]
fn hello_boots_under_qemu_and_exits_with_its_status() {
    if !qemu_available() {
        return;
    }
    let started = Instant::now();
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "hello",
        "--",
        "--greeting=Hi there",
        "--times=2",
    ]);
    eprintln!("lamina run -t virtio hello: {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hi there (1/2)\nHi there (2/2)\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("running hello on virtio"), "{stderr}");
    assert!(stderr.contains("software emulation (tcg)"), "{stderr}");

    // A bad boot argument reaches the guest's parser: message, status 2
    // (QEMU's exit code 7 mapped back).
    let output = run_lamina(&["run", "-t", "virtio", "hello", "--", "--colour=red"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("unknown argument '--colour'"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Devices the target has no driver for yet are refused before QEMU starts.
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "hello",
        "--",
        "--block:storage=/dev/null",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("virtio drivers"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
