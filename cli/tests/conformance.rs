//! The device conformance suites (lamina-conformance, through the test
//! application tests/guests/conformance) on every target: unix, spt, hvt
//! and virtio, each in a network namespace of its own with a tap and a
//! scratch disk.
//!
//! The Stack suite needs a far end. It is the suite's own peer
//! (`lamina_conformance::peer`), the same application built for unix with
//! `--role=peer`, run in the namespace on the tap's host address: a host
//! peer rather than loopback inside the guest, because lamina-net does not
//! route to its own addresses, and because the far end should be a stack
//! other than the one under test (here the Linux kernel's TCP and UDP).
//! The Netif suite, run before the stack takes the device, ARPs for the
//! same host address.

mod common;

use common::*;
use lamina_conformance::console;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = "tests/guests/conformance";

/// The suites every target must run, each reported with no failure.
const SUITES: [&str; 6] = ["Console", "Clock", "Random", "Block", "Netif", "Stack"];

/// Root and `ip`, or a plain message why not (a failure under CI).
fn can_run(test: &str) -> bool {
    root_or_skip(test, "network namespaces and taps need root") && tools_or_skip(test, &["ip"])
}

/// A namespace with the peer serving on the tap's host address; the peer
/// is the namespace's "guest" process, killed with the namespace.
fn namespace_with_peer(dir: &Path) -> Namespace {
    let peer = image("unix", APP);
    let mut ns = Namespace::new("lamina-c", 150);
    let host = format!("10.{}.0.1", ns.subnet);
    let mut command = ns.command(&peer);
    command.args(["--role=peer", &format!("--bind={host}")]);
    ns.start_guest(command, &dir.join("peer.log"));
    ns.wait_for(
        &format!("nc -z -w 1 {host} 7070 && echo listening"),
        "listening",
        Duration::from_secs(10),
    );
    ns
}

/// The suite's arguments: the peer and our address on the tap's subnet.
fn suite_args(ns: &Namespace) -> Vec<String> {
    vec![
        format!("--peer=10.{}.0.1", ns.subnet),
        format!("--self-ip={}", ns.guest_ip()),
    ]
}

/// Runs `command` (the suites) to its end, at most `limit`, in a process
/// group of its own (stopped if time runs out); returns its exit code and
/// console output.
fn run_suites(mut command: Command, limit: Duration) -> (Option<i32>, String) {
    command.process_group(0);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console");
    let file = std::fs::File::create(&log).unwrap();
    let mut child: Child = command
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            // TERM first: `lamina run` passes it on to QEMU, which has a
            // process group of its own; KILL whatever is left after 10 s.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let stopping = Instant::now();
            while child.try_wait().unwrap().is_none()
                && stopping.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
            panic!("the suites did not finish within {limit:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    (status.code(), text)
}

/// Every suite ran and passed, and the console's text arrived whole.
fn assert_conformance(target: &str, code: Option<i32>, output: &str) {
    let report: String = output
        .lines()
        .filter(|l| l.starts_with("conformance") && !l.starts_with("conformance console"))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!("--- conformance on {target}:\n{report}");
    for suite in SUITES {
        let summary = format!("conformance {suite}: ");
        let line = output.lines().find(|l| l.starts_with(&summary));
        assert!(
            line.is_some_and(|l| l.ends_with(" passed, 0 failed")),
            "{target}: the {suite} suite did not pass ({line:?}):\n{report}"
        );
    }
    if let Err(e) = console::check_output(output) {
        panic!("{target}: console: {e}");
    }
    assert!(
        output.contains("conformance: 6 suites, all passed"),
        "{target}:\n{report}"
    );
    assert_eq!(code, Some(0), "{target}: exit status\n{report}");
}

fn scratch_disk() -> tempfile::NamedTempFile {
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(1 << 20).unwrap();
    disk
}

#[test]
fn conformance_on_unix() {
    if !can_run("conformance on unix") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = namespace_with_peer(dir.path());
    let disk = scratch_disk();
    let mut command = ns.command(image("unix", APP));
    command
        .args(suite_args(&ns))
        // Listen where the peer can reach us (not the default loopback).
        .arg(format!("--bind=10.{}.0.1", ns.subnet))
        .arg("--net:service=tap0")
        .arg(format!("--block:storage={}", disk.path().display()));
    let (code, output) = run_suites(command, Duration::from_secs(300));
    assert_conformance("unix", code, &output);
}

#[test]
fn conformance_on_spt_and_hvt() {
    if !can_run("conformance on spt and hvt") {
        return;
    }
    for target in unikernel_targets("conformance") {
        let dir = tempfile::tempdir().unwrap();
        let ns = namespace_with_peer(dir.path());
        let disk = scratch_disk();
        let tender: PathBuf = tender(target);
        let mut command = ns.command(tender);
        command
            .args(["--mem=64", "--net:service=tap0"])
            .arg(format!("--block:storage={}", disk.path().display()))
            .arg(image(target, APP))
            .arg(format!("--ipv4={}/24", ns.guest_ip()))
            .args(suite_args(&ns));
        let (code, output) = run_suites(command, Duration::from_secs(300));
        assert_conformance(target, code, &output);
    }
}

#[test]
fn conformance_on_virtio() {
    if !can_run("conformance on virtio")
        || !tools_or_skip("conformance on virtio", &["qemu-system-x86_64"])
    {
        return;
    }
    image("virtio", APP); // built outside the namespace
    let dir = tempfile::tempdir().unwrap();
    let ns = namespace_with_peer(dir.path());
    let disk = scratch_disk();
    let lamina = lamina();
    let mut command = ns.command(lamina.get_program());
    command
        .args(["run", "--release", "-t", "virtio", APP, "--"])
        .arg("--net:service=tap0")
        .arg(format!("--block:storage={}", disk.path().display()))
        .arg(format!("--ipv4={}/24", ns.guest_ip()))
        .args(suite_args(&ns))
        .envs(lamina.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(root());
    let (code, output) = run_suites(command, Duration::from_secs(600));
    assert_conformance("virtio", code, &output);
}
