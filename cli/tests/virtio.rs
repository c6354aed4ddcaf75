//! The virtio target under QEMU (`-M microvm`, and `-M q35` with
//! virtio-pci; software emulation here): hello boots as a kernel through
//! its PVH note, prints on the serial console and exits with its status
//! through isa-debug-exit; a bad command line gives status 2 and the
//! parser's message; the selftest unikernel writes and reads a disk through
//! virtio-blk, and without RDRAND takes its entropy from virtio-rng; echo
//! and website serve nc and curl over a tap through virtio-net, each in a
//! network namespace of its own.
//! Skipped, saying so, where `qemu-system-x86_64` is not installed
//! (`scripts/setup.sh` installs it) or, for the tap tests, without root.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

    // Device arguments QEMU's virtio devices cannot honour are refused
    // before QEMU starts.
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "hello",
        "--",
        "--block-sector-size:storage=4096",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a device argument QEMU"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same on q35: the devices are virtio-pci functions found on the PCI
/// bus, their interrupts MSI-X messages.
#[test]
fn hello_boots_on_q35_and_exits_with_its_status() {
    if !qemu_available() {
        return;
    }
    let started = Instant::now();
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "--machine",
        "q35",
        "hello",
        "--",
        "--greeting=Hi q35",
        "--times=2",
    ]);
    eprintln!(
        "lamina run -t virtio --machine q35 hello: {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hi q35 (1/2)\nHi q35 (2/2)\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("QEMU -M q35 with"), "{stderr}");
    assert!(
        stderr.contains("software emulation (tcg)") || stderr.contains("KVM acceleration"),
        "{stderr}"
    );
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "--machine",
        "q35",
        "hello",
        "--",
        "--colour=red",
    ]);
    assert_eq!(output.status.code(), Some(2));

    // A disk through virtio-blk over PCI.
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(2048 * 512).unwrap();
    let storage = format!("--block:storage={}", disk.path().display());
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "--machine",
        "q35",
        "tests/guests/selftest",
        "--",
        &storage,
        "--test=block",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("selftest block: ok"), "{stdout}");
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
        assert_eq!(code, Some(3), "status 0 expected: {stdout}"); // see lamina_virtio::exit
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
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(2048 * 512).unwrap();
    let storage = format!("--block:storage={}", disk.path().display());
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "tests/guests/selftest",
        "--",
        &storage,
        "--test=block",
    ]);
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

    // A disk the guest does not declare under that name is refused before
    // QEMU starts, as the Solo5 tenders refuse it.
    let output = run_lamina(&[
        "run",
        "-t",
        "virtio",
        "tests/guests/selftest",
        "--",
        &format!("--block:other={}", disk.path().display()),
        "--test=block",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("selftest declares no block device 'other' (it declares: block:storage)"),
        "{stderr}"
    );
}

/// Root and the tools the tap tests need, or a plain message why not.
fn can_use_taps(test: &str) -> bool {
    if !qemu_available() {
        return false;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("SKIPPED {test}: needs root to create network namespaces and taps");
        return false;
    }
    for tool in ["ip", "nc", "curl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED {test}: {tool} is not installed (scripts/setup.sh installs it)");
            return false;
        }
    }
    true
}

/// A network namespace with tap0 at 10.N.0.1/24 and `lamina run -t virtio`
/// inside it on that tap; the guest (QEMU and lamina, one process group)
/// and the namespace go on drop, on success and on failure.
struct Namespace {
    name: String,
    subnet: u32,
    guest: Option<Child>,
}

impl Namespace {
    fn new() -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Namespace {
            name: format!("lamina-v{}-{n}", std::process::id()),
            subnet: 200 + n,
            guest: None,
        };
        let script = format!(
            "ip netns add {0} && ip -n {0} link set lo up && ip -n {0} tuntap add dev tap0 mode tap \
             && ip -n {0} addr add 10.{1}.0.1/24 dev tap0 && ip -n {0} link set tap0 up",
            ns.name, ns.subnet
        );
        let output = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            output.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ns
    }

    fn guest_ip(&self) -> String {
        format!("10.{}.0.2", self.subnet)
    }

    /// Builds `app` and boots it with `lamina run --release -t virtio` on
    /// tap0 (on microvm); its console goes to `log`.
    fn boot(&mut self, app: &str, log: &std::path::Path) {
        self.boot_on("microvm", app, log);
    }

    /// The same on QEMU machine `machine`.
    fn boot_on(&mut self, machine: &str, app: &str, log: &std::path::Path) {
        image("virtio", app); // built outside the namespace, once
        let log = std::fs::File::create(log).unwrap();
        let lamina = lamina();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(lamina.get_program())
            .args(["run", "--release", "-t", "virtio", "--machine", machine])
            .args([app, "--"])
            .arg("--net:service=tap0")
            .arg(format!("--ipv4={}/24", self.guest_ip()))
            .envs(lamina.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(root())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        self.guest = Some(child);
    }

    /// The QEMU process `lamina run` started (in the guest's process group).
    fn qemu_pid(&self) -> u32 {
        let group = self.guest.as_ref().expect("a guest").id();
        let out = Command::new("pgrep")
            .args(["-g", &group.to_string(), "qemu-system"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("QEMU runs in the guest's process group")
    }

    /// Runs `script` with `sh` inside the namespace.
    fn sh(&self, script: &str) -> Output {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        eprintln!(
            "--- in {}: {script}: {:?}\n{}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `script` until its output contains `expected`, for at most `limit`.
    fn wait_for(&mut self, script: &str, expected: &str, limit: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < limit {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "sh", "-c", script])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(expected) {
                eprintln!("--- {script}: answered after {:?}", start.elapsed());
                return text;
            }
            if let Some(Ok(Some(status))) = self.guest.as_mut().map(|g| g.try_wait()) {
                panic!("the unikernel exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no '{expected}' from `{script}` within {limit:?}");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut guest) = self.guest.take() {
            let group = format!("-{}", guest.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = guest.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Echo over a tap: TCP and UDP through virtio-net, many connections at once.
#[test]
fn echo_serves_nc_over_a_tap() {
    if !can_use_taps("virtio echo over a tap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut ns = Namespace::new();
    ns.boot("examples/echo", &console);
    let ip = ns.guest_ip();
    ns.wait_for(
        &format!("echo probe | nc -N -w 1 {ip} 7"),
        "probe",
        Duration::from_secs(120),
    );
    let tcp = ns.sh(&format!("printf 'hello tcp\\n' | nc -N -w 3 {ip} 7"));
    assert_eq!(String::from_utf8_lossy(&tcp.stdout), "hello tcp\n");
    let udp = ns.sh(&format!("printf 'hello udp\\n' | nc -u -w 1 {ip} 7"));
    assert_eq!(String::from_utf8_lossy(&udp.stdout), "hello udp\n");
    // 20 clients at once, 64 KiB each: more than a ring of frames each way.
    let load = ns.sh(&format!(
        "for i in $(seq 20); do (head -c 65536 /dev/urandom > /tmp/{0}-$i; \
         nc -N -w 10 {ip} 7 < /tmp/{0}-$i | cmp - /tmp/{0}-$i && echo same; rm -f /tmp/{0}-$i) & done; wait",
        ns.name
    ));
    assert_eq!(
        String::from_utf8_lossy(&load.stdout)
            .matches("same")
            .count(),
        20,
        "{}",
        std::fs::read_to_string(&console).unwrap_or_default()
    );
}

/// Echo over a tap on q35: virtio-net over PCI, MSI-X interrupts.
#[test]
fn echo_serves_nc_over_a_tap_on_q35() {
    if !can_use_taps("virtio echo over a tap on q35") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut ns = Namespace::new();
    ns.boot_on("q35", "examples/echo", &console);
    let ip = ns.guest_ip();
    ns.wait_for(
        &format!("echo probe | nc -N -w 1 {ip} 7"),
        "probe",
        Duration::from_secs(120),
    );
    let udp = ns.sh(&format!("printf 'hello udp\\n' | nc -u -w 1 {ip} 7"));
    assert_eq!(String::from_utf8_lossy(&udp.stdout), "hello udp\n");
    // 10 clients at once, 64 KiB each.
    let load = ns.sh(&format!(
        "for i in $(seq 10); do (head -c 65536 /dev/urandom > /tmp/{0}-$i; \
         nc -N -w 10 {ip} 7 < /tmp/{0}-$i | cmp - /tmp/{0}-$i && echo same; rm -f /tmp/{0}-$i) & done; wait",
        ns.name
    ));
    assert_eq!(
        String::from_utf8_lossy(&load.stdout)
            .matches("same")
            .count(),
        10,
        "{}",
        std::fs::read_to_string(&console).unwrap_or_default()
    );
    // Idle, the guest halts until an interrupt: QEMU stays mostly idle.
    let qemu = ns.qemu_pid();
    let before = cpu_seconds(qemu);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(qemu) - before;
    eprintln!("QEMU (q35) used {used:.3} s of CPU in 2 s idle");
    assert!(
        used < 1.0,
        "an idle guest kept QEMU busy: {used:.3} s in 2 s"
    );
}

/// The website over a tap: the home page, a 404, and the guest idles
/// (QEMU does not spin on a host core) between requests.
#[test]
fn website_serves_curl_over_a_tap() {
    if !can_use_taps("virtio website over a tap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut ns = Namespace::new();
    ns.boot("examples/website", &console);
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
    // Idle, the guest halts: QEMU uses well under half a core.
    let qemu = ns.qemu_pid();
    let before = cpu_seconds(qemu);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(qemu) - before;
    eprintln!("QEMU used {used:.3} s of CPU in 2 s idle");
    assert!(
        used < 1.0,
        "an idle guest kept QEMU busy: {used:.3} s in 2 s"
    );
}

/// User plus system CPU time of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}
