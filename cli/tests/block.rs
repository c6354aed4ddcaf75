//! Block devices on every unikernel target, through the `disk` test guest:
//! the Block conformance suite (multi-sector transfers, flush, bad
//! requests) with 512- and 4096-byte sectors on spt and hvt, and with
//! virtio-blk under QEMU; a pattern written and flushed on one boot reads
//! back on the next, and the host sees it in the file (on virtio, a write
//! of many requests in flight at once); on spt, a flush
//! reaches `fdatasync(2)` of the backing file (strace), and a multi-sector
//! write goes in few system calls; on hvt, a 1 MiB write is four requests
//! and the flush one in the block ring, and requests cost far fewer VM
//! exits than one each.

mod common;

use common::*;
use lamina_conformance::pattern;
use std::path::Path;
use std::process::{Command, Output};

const APP: &str = "tests/guests/disk";

/// A scratch disk of `bytes`, not a power of two of sectors (so transfers
/// at the end of the device come in pieces on spt).
fn scratch_disk(bytes: u64) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(bytes).unwrap();
    file
}

/// Boots the disk guest on `target` (spt or hvt) over `disk` with
/// `sector`-byte sectors, `wrap` (e.g. strace) before the tender if given.
fn boot(target: &str, disk: &Path, sector: u64, args: &[&str], wrap: &[&str]) -> Output {
    let mut command = match wrap.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(tender(target));
            command
        }
        None => Command::new(tender(target)),
    };
    command
        .arg("--mem=64")
        .arg(format!("--block:storage={}", disk.display()))
        .arg(format!("--block-sector-size:storage={sector}"))
        .arg(image(target, APP))
        .args(args);
    let output = command.output().unwrap();
    eprintln!(
        "--- {target} {sector} disk {args:?}: {:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The suite passed with every check it has today.
fn assert_suite_passed(what: &str, output: &Output) {
    let text = stdout(output);
    assert!(
        text.contains("conformance Block: 10 passed, 0 failed"),
        "{what}:\n{text}"
    );
    assert_eq!(output.status.code(), Some(0), "{what}");
}

#[test]
fn block_suite_passes_with_512_and_4096_byte_sectors_on_spt_and_hvt() {
    for target in unikernel_targets("block suite") {
        for sector in [512, 4096] {
            let disk = scratch_disk((8 << 20) + 3 * 4096);
            let output = boot(target, disk.path(), sector, &["--mode=check"], &[]);
            let geometry = format!(
                "disk: {} sectors of {sector} bytes",
                ((8 << 20) + 3 * 4096) / sector
            );
            assert!(stdout(&output).contains(&geometry), "{target} {sector}");
            assert_suite_passed(&format!("{target}, {sector}-byte sectors"), &output);
        }
    }
}

#[test]
fn flushed_data_survives_a_reboot_and_reaches_the_file() {
    const BYTES: usize = 3 << 20;
    for target in unikernel_targets("block persistence") {
        let disk = scratch_disk(8 << 20);
        let bytes = format!("--bytes={BYTES}");
        let output = boot(
            target,
            disk.path(),
            4096,
            &["--mode=write", &bytes, "--seed=5"],
            &[],
        );
        assert!(stdout(&output).contains("disk write: done"), "{target}");
        let file = std::fs::read(disk.path()).unwrap();
        assert!(
            file[..BYTES] == pattern(BYTES, 5)[..],
            "{target}: the file differs"
        );
        assert!(
            file[BYTES..].iter().all(|&b| b == 0),
            "{target}: written past"
        );
        let output = boot(
            target,
            disk.path(),
            512,
            &["--mode=verify", &bytes, "--seed=5"],
            &[],
        );
        assert!(stdout(&output).contains("disk verify: ok"), "{target}");
        // A different pattern does not verify: the check can fail.
        let output = boot(
            target,
            disk.path(),
            512,
            &["--mode=verify", &bytes, "--seed=6"],
            &[],
        );
        assert!(
            stdout(&output).contains("disk verify: differs at byte 0"),
            "{target}"
        );
        assert_eq!(output.status.code(), Some(1), "{target}");
    }
}

#[test]
fn a_flush_on_spt_is_fdatasync_of_the_disk_and_writes_go_in_few_calls() {
    if !tools_or_skip("spt flush under strace", &["strace"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let disk = scratch_disk(8 << 20);
    let trace_arg = trace.display().to_string();
    let wrap = [
        "strace",
        "-f",
        "-e",
        "trace=pwrite64,fdatasync",
        "-o",
        &trace_arg,
    ];
    let output = boot(
        "spt",
        disk.path(),
        512,
        &["--mode=write", "--bytes=1048576"],
        &wrap,
    );
    assert!(stdout(&output).contains("disk write: done"));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let calls = |name: &str| {
        trace
            .lines()
            .filter(|l| l.contains(&format!(" {name}(")))
            .collect::<Vec<_>>()
    };
    // 1 MiB in 256 KiB calls (2048 with one sector per call), then one
    // fdatasync of the same descriptor after the last write.
    let writes = calls("pwrite64");
    assert_eq!(writes.len(), 4, "{trace}");
    assert!(
        writes
            .iter()
            .all(|l| l.contains(", 262144, ") && l.ends_with("= 262144")),
        "{trace}"
    );
    let syncs = calls("fdatasync");
    assert_eq!(syncs.len(), 1, "{trace}");
    let fd = |line: &str| {
        line.split('(')
            .nth(1)
            .and_then(|s| s.split([',', ')']).next())
            .map(str::to_string)
    };
    assert_eq!(fd(syncs[0]), fd(writes[0]), "{trace}");
    assert!(syncs[0].ends_with("= 0"), "{trace}");
    let position = |line: &str| trace.find(line).unwrap();
    assert!(position(syncs[0]) > position(writes[3]), "{trace}");
}

/// The count right before `label` in `text` (as in "42 VM exits").
fn count_before(text: &str, label: &str) -> u64 {
    number_before(text, label) as u64
}

#[test]
fn on_hvt_block_requests_go_through_the_ring_without_exits() {
    if !kvm_or_skip("hvt block ring") {
        return;
    }
    let disk = scratch_disk(8 << 20);
    let run = |args: &[&str]| {
        let output = Command::new(tender("hvt"))
            .args(["--x-stats", "--mem=64"])
            .arg(format!("--block:storage={}", disk.path().display()))
            .arg(image("hvt", APP))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        eprintln!("{}{stderr}", stdout(&output));
        (output, stderr)
    };
    // 1 MiB of 512-byte sectors: four 256 KiB requests in flight together
    // and a flush, in the ring; no block hypercall.
    let (output, stderr) = run(&["--mode=write", "--bytes=1048576", "--seed=3"]);
    assert!(stdout(&output).contains("disk write: done"), "{stderr}");
    assert!(
        stderr.contains("block ring: 5 requests (0 reads, 4 writes, 1 flushes, 0 refused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("block_write") && !stderr.contains("block_flush"),
        "{stderr}"
    );
    let file = std::fs::read(disk.path()).unwrap();
    assert!(
        file[..1 << 20] == pattern(1 << 20, 3)[..],
        "the file differs"
    );
    // A large transfer: 8 MiB is 32 requests of 256 KiB in flight
    // together and a flush; even when the I/O thread does not get a CPU
    // in time (a busy host) and the guest has the vCPU thread serve the
    // ring, one such exit serves every request in flight.
    let (output, stderr) = run(&["--mode=write", "--bytes=8388608", "--seed=4"]);
    assert!(stdout(&output).contains("disk write: done"), "{stderr}");
    assert_eq!(count_before(&stderr, "requests ("), 33, "{stderr}");
    let serves = count_after_or_zero(&stderr, "block_ring_serve");
    assert!(
        serves * 8 <= 33,
        "{serves} BlockRingServe exits for 33 requests"
    );
    let (output, stderr) = run(&["--mode=verify", "--bytes=8388608", "--seed=4"]);
    assert!(stdout(&output).contains("disk verify: ok"), "{stderr}");
    // One request at a time (each waits for its answer): on an idle host
    // the I/O thread answers without any exit; on a busy one a request
    // costs at most the one exit of BlockRingServe, never a spin of many.
    const OPS: u64 = 5000;
    let ops = format!("--ops={OPS}");
    let (output, stderr) = run(&[
        "--mode=bench",
        "--pattern=rand-read",
        "--bytes=4194304",
        &ops,
    ]);
    assert!(stdout(&output).contains("disk bench rand-read"), "{stderr}");
    assert_eq!(count_before(&stderr, "requests ("), OPS, "{stderr}");
    assert!(!stderr.contains("block_read"), "{stderr}");
    let serves = count_after_or_zero(&stderr, "block_ring_serve");
    assert!(
        serves <= OPS,
        "{serves} BlockRingServe exits for {OPS} requests"
    );
    eprintln!(
        "{:.3} VM exits per request",
        count_before(&stderr, "VM exits to the tender") as f64 / OPS as f64
    );
}

/// The number after `label` in `text` (as in "block_ring_serve 42"), or 0
/// when `label` is absent.
fn count_after_or_zero(text: &str, label: &str) -> u64 {
    text.find(label).map_or(0, |at| {
        text[at + label.len()..]
            .split(|c: char| !c.is_ascii_digit() && c != ' ')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    })
}

#[test]
fn block_suite_passes_on_virtio() {
    if !tools_or_skip("block suite on virtio", &["qemu-system-x86_64"]) {
        return;
    }
    let disk = scratch_disk((8 << 20) + 3 * 4096);
    let storage = format!("--block:storage={}", disk.path().display());
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--release", "-t", "virtio", APP, "--", &storage];
        all.extend(args);
        let output = run_lamina(&all);
        eprintln!("{}", stdout(&output));
        output
    };
    assert_suite_passed("virtio", &run(&["--mode=check"]));
    // 3 MiB: 48 requests of 64 KiB, several in flight at a time.
    const BYTES: usize = 3 << 20;
    let bytes = format!("--bytes={BYTES}");
    let output = run(&["--mode=write", &bytes, "--seed=9"]);
    assert!(stdout(&output).contains("disk write: done"));
    let file = std::fs::read(disk.path()).unwrap();
    assert!(file[..BYTES] == pattern(BYTES, 9)[..], "the file differs");
    let output = run(&["--mode=verify", &bytes, "--seed=9"]);
    assert!(stdout(&output).contains("disk verify: ok"));
}
