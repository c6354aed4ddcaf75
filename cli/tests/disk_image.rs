//! The bootable raw disk image of the virtio target (`lamina build --disk`):
//! hello, with its boot arguments baked in, boots from the disk alone on a
//! BIOS PC under QEMU (`-M pc`, SeaBIOS, GRUB, Multiboot2), prints its lines
//! on the serial console and exits with its status through isa-debug-exit;
//! a bad baked argument gives status 2 and the parser's message. Skipped,
//! saying so, where QEMU or GRUB's BIOS files are not installed
//! (`scripts/setup.sh` installs both); under CI it fails instead.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a boot may take under software emulation.
const LIMIT: Duration = Duration::from_secs(30);

/// QEMU and GRUB's BIOS files, or the test is skipped (under CI: fails,
/// see [`skip_or_fail`]).
fn tools_available() -> bool {
    const WHAT: &str = "booting a disk image";
    if !tools_or_skip(WHAT, &["qemu-system-x86_64", "grub-mkimage"]) {
        return false;
    }
    let grub_bios = Path::new("/usr/lib/grub/i386-pc/boot.img").exists();
    if !grub_bios {
        skip_or_fail(
            WHAT,
            "GRUB's BIOS files are not installed (grub-pc-bin; scripts/setup.sh installs it)",
        );
    }
    grub_bios
}

/// `lamina build -t virtio --disk -o IMAGE hello -- ARGS`.
fn build_disk(image: &Path, args: &[&str]) {
    let mut command = vec!["build", "-t", "virtio", "--disk", "-o"];
    command.push(image.to_str().unwrap());
    command.push("hello");
    command.push("--");
    command.extend_from_slice(args);
    let output = run_lamina(&command);
    assert!(output.status.success(), "lamina build --disk failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrote the disk image"), "{stderr}");
    let size = std::fs::metadata(image).unwrap().len();
    assert_eq!(size % (1 << 20), 0, "a whole number of MiB: {size}");
}

/// Boots `image` as the only disk of a BIOS PC; returns the guest's status
/// (from QEMU's isa-debug-exit code) and the serial console's output.
fn boot(image: &Path) -> (Option<i32>, String) {
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg", "-cpu", "max", "-m", "128"])
        .arg("-drive")
        .arg(format!("file={},format=raw", image.display()))
        .args(["-display", "none", "-serial", "stdio"])
        .args([
            "-device",
            "isa-debug-exit",
            "-nodefaults",
            "-no-user-config",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start QEMU");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the disk image did not finish booting in {LIMIT:?}; console:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    eprintln!("boot of {}: {:?}", image.display(), started.elapsed());
    (
        status.code().and_then(lamina_abi::debug_exit::guest_status),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn hello_boots_from_its_disk_image_with_baked_arguments() {
    if !tools_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("hello.img");
    build_disk(&image, &["--greeting=It's \"Hi\" $there", "--times=2"]);
    let (status, console) = boot(&image);
    assert_eq!(status, Some(0), "{console}");
    assert_eq!(
        console,
        "It's \"Hi\" $there (1/2)\nIt's \"Hi\" $there (2/2)\n"
    );

    // A bad baked argument reaches the guest's parser: message, status 2.
    build_disk(&image, &["--colour=red"]);
    let (status, console) = boot(&image);
    assert_eq!(status, Some(2), "{console}");
    assert!(console.contains("unknown argument '--colour'"), "{console}");

    // Device arguments name host resources: refused before anything is built.
    let output = run_lamina(&[
        "build",
        "-t",
        "virtio",
        "--disk",
        "hello",
        "--",
        "--net:service=tap0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("names a host device"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
