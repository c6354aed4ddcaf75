//! The virtio target under QEMU (`-M microvm`, and `-M q35` with
//! virtio-pci; software emulation here): hello boots as a kernel through
//! its PVH note, prints on the serial console and exits with its status
//! through isa-debug-exit; a bad command line gives status 2 and the
//! parser's message; the selftest unikernel writes and reads a disk through
//! virtio-blk, and without RDRAND takes its entropy from virtio-rng; echo
//! and website serve nc and curl over a tap through virtio-net, each in a
//! network namespace of its own.
//! Skipped, saying so, where `qemu-system-x86_64` is not installed
//! (`scripts/setup.sh` installs it) or, for the tap tests, without root;
//! under CI such a test fails instead (see `skip_or_fail`).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether QEMU is installed; if not, the test is skipped or, under CI,
/// fails (see [`skip_or_fail`]).
fn qemu_available() -> bool {
    tools_or_skip("the virtio target under QEMU", &["qemu-system-x86_64"])
}

/// `lamina run -t virtio [--machine MACHINE] APP -- GUEST_ARGS`; without a
/// machine, on the default (microvm).
fn run_virtio(machine: Option<&str>, app: &str, guest_args: &[&str]) -> Output {
    let mut args = vec!["run", "-t", "virtio"];
    if let Some(machine) = machine {
        args.extend(["--machine", machine]);
    }
    args.extend([app, "--"]);
    args.extend(guest_args);
    run_lamina(&args)
}

/// Hello greets twice and exits with status 0 on `machine`, its run said
/// so on stderr as `check_stderr` expects; a bad boot argument reaches the
/// guest's parser: message, status 2 (QEMU's exit code 7 mapped back).
fn hello_boots_and_exits_with_its_status(
    machine: Option<&str>,
    greeting: &str,
    check_stderr: impl Fn(&str),
) {
    let started = Instant::now();
    let output = run_virtio(
        machine,
        "hello",
        &[&format!("--greeting={greeting}"), "--times=2"],
    );
    eprintln!(
        "lamina run -t virtio on {} hello: {:?}",
        machine.unwrap_or("microvm"),
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{greeting} (1/2)\n{greeting} (2/2)\n")
    );
    check_stderr(&String::from_utf8_lossy(&output.stderr));

    let output = run_virtio(machine, "hello", &["--colour=red"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("unknown argument '--colour'"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn hello_boots_under_qemu_and_exits_with_its_status() {
    if !qemu_available() {
        return;
    }
    hello_boots_and_exits_with_its_status(None, "Hi there", |stderr| {
        assert!(stderr.contains("running hello on virtio"), "{stderr}");
        assert!(stderr.contains("software emulation (tcg)"), "{stderr}");
    });

    // Device arguments QEMU's virtio devices cannot honour are refused
    // before QEMU starts.
    let output = run_virtio(None, "hello", &["--block-sector-size:storage=4096"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a device argument QEMU"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same on q35: the devices are virtio-pci functions found on the PCI
/// bus, their interrupts MSI-X messages; a disk through virtio-blk over PCI.
#[test]
fn hello_boots_on_q35_and_exits_with_its_status() {
    if !qemu_available() {
        return;
    }
    hello_boots_and_exits_with_its_status(Some("q35"), "Hi q35", |stderr| {
        assert!(stderr.contains("QEMU -M q35 with"), "{stderr}");
        assert!(
            stderr.contains("software emulation (tcg)") || stderr.contains("KVM acceleration"),
            "{stderr}"
        );
    });
    selftest_writes_and_reads_a_disk_on(Some("q35"));
}

/// A CPU without RDRAND (`-cpu max,-rdrand,-rdseed`): the guest seeds its
/// CSPRNG from virtio-rng, over virtio-mmio on microvm and virtio-pci on
/// q35; with no entropy device either, it refuses to make up random
/// numbers.
#[test]
fn without_rdrand_entropy_comes_from_virtio_rng() {
    if !qemu_available() {
        return;
    }
    let kernel = image("virtio", "tests/guests/selftest");
    let qemu = |machine: &str, rng: Option<&str>| {
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args([
                "-M",
                machine,
                "-accel",
                "tcg",
                "-cpu",
                "max,-rdrand,-rdseed",
            ])
            .args([
                "-m",
                "64",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .args(["-serial", "stdio", "-device", "isa-debug-exit"])
            .args(["-global", "virtio-mmio.force-legacy=false"]);
        if let Some(rng) = rng {
            command.args(["-device", rng]);
        }
        let output = command
            .arg("-kernel")
            .arg(&kernel)
            .args(["-append", "--test=random"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("--- {machine} with {rng:?}: {:?}\n{stdout}", output.status);
        (output.status.code(), stdout)
    };
    for (machine, rng) in [
        ("microvm,acpi=off", "virtio-rng-device"),
        ("q35", "virtio-rng-pci,disable-legacy=on"),
    ] {
        let (code, stdout) = qemu(machine, Some(rng));
        assert_eq!(code, Some(3), "status 0 expected: {stdout}"); // see lamina_abi::debug_exit
        assert!(stdout.contains("seeded from virtio-rng"), "{stdout}");
        assert!(stdout.contains("selftest random: ok"), "{stdout}");
    }
    let (code, stdout) = qemu("q35", None);
    assert_eq!(code, Some(255), "a panic expected: {stdout}");
    assert!(stdout.contains("no entropy"), "{stdout}");
}

/// The selftest unikernel writes a pattern at the start, the middle and the
/// end of a disk through virtio-blk, reads it back, and is refused a read
/// past the end; the host file holds what it wrote.
#[test]
fn selftest_writes_and_reads_a_disk_through_virtio_blk() {
    if !qemu_available() {
        return;
    }
    let disk = selftest_writes_and_reads_a_disk_on(None);

    // A disk the guest does not declare under that name is refused before
    // QEMU starts, as the Solo5 tenders refuse it.
    let output = run_virtio(
        None,
        "tests/guests/selftest",
        &[
            &format!("--block:other={}", disk.path().display()),
            "--test=block",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("selftest declares no block device 'other' (it declares: block:storage)"),
        "{stderr}"
    );
}

/// Selftest's block test on `machine` with a 1 MiB disk; returns the disk.
fn selftest_writes_and_reads_a_disk_on(machine: Option<&str>) -> tempfile::NamedTempFile {
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(2048 * 512).unwrap();
    let storage = format!("--block:storage={}", disk.path().display());
    let output = run_virtio(
        machine,
        "tests/guests/selftest",
        &[&storage, "--test=block"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("block: 2048 sectors of 512 bytes"),
        "{stdout}"
    );
    assert!(stdout.contains("selftest block: ok"), "{stdout}");
    let written = std::fs::read(disk.path()).unwrap();
    assert!(
        written[..512].iter().any(|&b| b != 0),
        "the first sector on the host is still zero"
    );
    disk
}

/// QEMU and the tools the tap tests need, and root, or a plain message why not.
fn can_use_taps(test: &str) -> bool {
    qemu_available() && can_use_namespaces(test, &["ip", "nc", "curl"])
}

/// A network namespace with tap0 at 10.N.0.1/24 (N from 200) and
/// `lamina run --release -t virtio --machine MACHINE APP` inside it on that
/// tap at the guest's address; its console goes to `log`. The guest
/// (lamina, which takes QEMU with it) and the namespace go on drop, on
/// success and on failure.
fn boot(machine: &str, app: &str, log: &Path) -> Namespace {
    image("virtio", app); // built outside the namespace, once
    let mut ns = Namespace::new("lamina-v", 200);
    let lamina = lamina();
    let mut guest = ns.command(lamina.get_program());
    guest
        .args(["run", "--release", "-t", "virtio", "--machine", machine])
        .args([app, "--"])
        .arg("--net:service=tap0")
        .arg(format!("--ipv4={}/24", ns.guest_ip()))
        .envs(lamina.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(root());
    ns.start_guest(guest, log);
    ns
}

/// The QEMU process `lamina run` started (its child; `ip netns exec`
/// became lamina).
fn qemu_pid(ns: &Namespace) -> u32 {
    let out = Command::new("pgrep")
        .args(["-P", &ns.guest_pid().to_string(), "qemu-system"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("QEMU runs as lamina's child")
}

/// Idle, the guest halts until an interrupt: QEMU uses well under half a
/// core.
fn assert_qemu_idles(ns: &Namespace, machine: &str) {
    let used = cpu_seconds_over(qemu_pid(ns), Duration::from_secs(2));
    eprintln!("QEMU ({machine}) used {used:.3} s of CPU in 2 s idle");
    assert!(
        used < 1.0,
        "an idle guest kept QEMU busy: {used:.3} s in 2 s"
    );
}

/// Echo over a tap on `machine`: TCP and UDP through virtio-net, `clients`
/// connections of 64 KiB at once, 4 MB in one connection (checksum and
/// segmentation offload, 64 KiB frames out of the guest), checked byte for
/// byte by echo-load, then QEMU idles.
fn echo_serves_nc_over_a_tap_on(machine: &str, clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut ns = boot(machine, "examples/echo", &console);
    ns.wait_for_echo(Duration::from_secs(120));
    let ip = ns.guest_ip();
    let tcp = ns.sh(&format!("printf 'hello tcp\\n' | nc -N -w 3 {ip} 7"));
    assert_eq!(String::from_utf8_lossy(&tcp.stdout), "hello tcp\n");
    let udp = ns.sh(&format!("printf 'hello udp\\n' | nc -u -w 1 {ip} 7"));
    assert_eq!(String::from_utf8_lossy(&udp.stdout), "hello udp\n");
    let load = ns.sh(&format!(
        "for i in $(seq {clients}); do (head -c 65536 /dev/urandom > /tmp/{0}-$i; \
         nc -N -w 10 {ip} 7 < /tmp/{0}-$i | cmp - /tmp/{0}-$i && echo same; rm -f /tmp/{0}-$i) & done; wait",
        ns.name
    ));
    assert_eq!(
        String::from_utf8_lossy(&load.stdout)
            .matches("same")
            .count(),
        clients,
        "{}",
        std::fs::read_to_string(&console).unwrap_or_default()
    );
    let load = release_dir().join("echo-load");
    let bulk = ns.exec(&[
        load.to_str().unwrap(),
        &format!("{ip}:7"),
        "--connections",
        "1",
        "--bytes",
        "4000000",
        "--timeout",
        "60",
    ]);
    assert!(
        bulk.status.success() && String::from_utf8_lossy(&bulk.stdout).contains("1/1 connections"),
        "{machine}: bulk echo failed: {}",
        String::from_utf8_lossy(&bulk.stdout)
    );
    assert_qemu_idles(&ns, machine);
}

/// Echo over a tap: 20 clients at once, more than a ring of frames each way.
#[test]
fn echo_serves_nc_over_a_tap() {
    if !can_use_taps("virtio echo over a tap") {
        return;
    }
    echo_serves_nc_over_a_tap_on("microvm", 20);
}

/// Echo over a tap on q35: virtio-net over PCI, MSI-X interrupts.
#[test]
fn echo_serves_nc_over_a_tap_on_q35() {
    if !can_use_taps("virtio echo over a tap on q35") {
        return;
    }
    echo_serves_nc_over_a_tap_on("q35", 10);
}

/// Malformed frames out of the tap (bad_frames.py): the guest verifies
/// the TCP/UDP checksums the device did not vouch for, drops and counts the
/// bad ones, and keeps serving.
#[test]
fn malformed_frames_are_dropped_over_a_tap() {
    if !can_use_taps("virtio malformed frames")
        || !tools_or_skip("virtio malformed frames", &["python3"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut ns = boot("microvm", "examples/echo", &console);
    ns.wait_for_echo(Duration::from_secs(120));
    let ip = ns.guest_ip();
    let script = root().join("cli").join("tests").join("bad_frames.py");
    let out = ns.exec(&["python3", script.to_str().unwrap(), "tap0", &ip]);
    assert!(out.status.success(), "the frame generator failed");
    assert!(ns.guest_alive(), "the unikernel died");
    let load = release_dir().join("echo-load");
    let out = ns.exec(&[
        load.to_str().unwrap(),
        &format!("{ip}:7"),
        "--connections",
        "20",
        "--bytes",
        "10000",
        "--timeout",
        "60",
    ]);
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        out.status.success(),
        "echo no longer works after malformed traffic:\n{log}"
    );
    let dropped = dropped_frames(&log);
    assert!(
        dropped.is_some_and(|n| n > 0),
        "no dropped frames reported:\n{log}"
    );
    assert!(!log.contains("panic"), "{log}");
}

/// The website over a tap: the home page, a 404, and the guest idles
/// (QEMU does not spin on a host core) between requests.
#[test]
fn website_serves_curl_over_a_tap() {
    if !can_use_taps("virtio website over a tap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ns = boot("microvm", "examples/website", &dir.path().join("console"));
    let url = format!("http://{}", ns.guest_ip());
    let page = ns.wait_for(
        &format!("curl -sS --max-time 2 -i {url}/"),
        "HTTP/1.1 200",
        Duration::from_secs(120),
    );
    assert!(page.to_lowercase().contains("<html"), "{page}");
    let missing = ns.sh(&format!("curl -sS --max-time 5 -i {url}/no/such/page"));
    assert!(
        String::from_utf8_lossy(&missing.stdout).starts_with("HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&missing.stdout)
    );
    assert_qemu_idles(&ns, "microvm");
}

/// The image is sealed after boot: writing to its own code or read-only
/// data is a page fault, which the runtime reports (vector 14, the
/// address) and ends with the highest status, instead of going on.
#[test]
fn sealed_pages_fault_under_qemu() {
    if !qemu_available() {
        return;
    }
    for test in ["write-text", "write-rodata"] {
        let output = run_virtio(None, "tests/guests/selftest", &[&format!("--test={test}")]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(lamina_abi::debug_exit::MAX_STATUS),
            "{test}: {stdout}"
        );
        assert!(
            stdout.contains("lamina: CPU exception 14 (page fault at 0x"),
            "{test}: {stdout}"
        );
        assert!(
            !stdout.contains("let '"),
            "{test}: the write went through\n{stdout}"
        );
    }
}
