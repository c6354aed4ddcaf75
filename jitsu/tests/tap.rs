//! Tap mode's host side against real peers: in a fresh network namespace
//! (the daemon's host) the test makes the bridge and a service tap with
//! lamina-jitsu's own code; a client in a second namespace, behind a veth
//! on the bridge, pings or curls the guest's address while nothing runs
//! there; the test answers as the daemon would (watch, summon, hand the
//! tap to lamina-spt or lamina-hvt running the website example) and checks
//! that the client got its page with no SYN retransmission, and that
//! nothing is left behind.
//!
//! Needs root (namespaces, bridges, taps), ip, curl and ping; the hvt
//! part needs /dev/kvm. Skipped with the reason otherwise, failed under CI.

use lamina_jitsu::frame::mac_for;
use lamina_jitsu::probe::Probe;
use lamina_jitsu::tap::{inherit_fd, Bridge, ServiceTap, TapEvent};
use lamina_test_support::{kvm_or_skip, root_or_skip, tools_or_skip};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BRIDGE: &str = "ljitsu0";
const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CLIENT: &str = "10.77.0.100";
const TAP: &str = "ljt-www";

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The target directory the CLI tests use too: the `cargo test` running
/// us holds the lock on the workspace's.
fn target_dir() -> PathBuf {
    root().join("target").join("cli-tests")
}

fn can_run(test: &str, tools: &[&str]) -> bool {
    root_or_skip(test, "to create network namespaces, bridges and taps")
        && tools_or_skip(test, tools)
}

/// Runs `script` with sh; panics with its output if it fails.
fn sh(script: &str) -> Output {
    let output = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Two network namespaces: `host`, where the test thread makes the bridge
/// and taps (it enters it), and `client`, joined to the bridge by a veth.
/// Both are deleted on drop.
struct Namespaces {
    host: String,
    client: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let ns = Namespaces {
            host: format!("ljt-host-{id}"),
            client: format!("ljt-client-{id}"),
        };
        sh(&format!(
            "ip netns add {h} && ip netns add {c} && ip -n {h} link set lo up \
             && ip -n {c} link set lo up \
             && ip -n {h} link add ljt-veth type veth peer name eth0 netns {c} \
             && ip -n {c} addr add {CLIENT}/24 dev eth0 && ip -n {c} link set eth0 up",
            h = ns.host,
            c = ns.client
        ));
        ns
    }

    /// Moves the calling thread into the host namespace: the interfaces
    /// and sockets it makes from now on are there, and so are the
    /// processes it starts.
    fn enter_host(&self) {
        let path = format!("/run/netns/{}", self.host);
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns takes a descriptor and a flag; it affects the
        // calling thread only.
        let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(done, 0, "setns {path}: {}", std::io::Error::last_os_error());
    }

    /// Puts the client's veth on the bridge (made by then) and waits until
    /// the client reaches the host: until the new link is up on both ends,
    /// the kernel drops what the client sends (its first ARP request, say).
    fn plug_client(&self) {
        sh(&format!(
            "ip -n {h} link set ljt-veth master {BRIDGE} && ip -n {h} link set ljt-veth up",
            h = self.host
        ));
        let reached = (0..10).any(|_| {
            self.client("ping")
                .args(["-c", "1", "-W", "1", &HOST.to_string()])
                .output()
                .unwrap()
                .status
                .success()
        });
        assert!(reached, "the client cannot reach the host");
    }

    /// A command run in the client's namespace.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.client, program]);
        command
    }

    /// The names of the host namespace's interfaces.
    fn host_links(&self) -> String {
        let output = sh(&format!("ip -n {} -o link show", self.host));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

/// Runs `body` on a thread of its own, which may enter namespaces (libtest
/// may run a test on the main thread, which other tests share).
fn on_own_thread(body: impl FnOnce() + Send + 'static) {
    if let Err(panic) = std::thread::spawn(body).join() {
        std::panic::resume_unwind(panic);
    }
}

/// Waits up to `limit` for the watch of `tap` to see something, handling
/// it; returns every event until a summon (inclusive), or all if none came.
fn watch_until_summoned(tap: &mut ServiceTap, limit: Duration) -> Vec<TapEvent> {
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut poll = libc::pollfd {
            fd: tap.watch_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: poll reads and writes one pollfd, which lives for the call.
        let ready = unsafe { libc::poll(&mut poll, 1, ms) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        if ready == 0 {
            continue;
        }
        events.extend(tap.on_readable().unwrap());
        if events.iter().any(|e| matches!(e, TapEvent::Summon(_))) {
            break;
        }
    }
    events
}

/// How many SYNs the client's kernel has retransmitted (TcpExt
/// TCPSynRetrans in its namespace's /proc/net/netstat).
fn client_syn_retransmits(ns: &Namespaces) -> u64 {
    let output = ns.client("cat").arg("/proc/net/netstat").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|name| name == "TCPSynRetrans")
        .expect("TCPSynRetrans is counted");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// The client's neighbour entry for the guest, as `ip neigh` shows it.
fn client_neighbour(ns: &Namespaces) -> String {
    let output = ns
        .client("ip")
        .args(["neigh", "show", &GUEST.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// ARP for a stopped guest is answered from the guest's MAC (the client's
/// neighbour table shows it), a packet to it is a summon event and waits
/// in the tap, frames for other hosts never queue, nothing is watched
/// while the guest runs, and dropping the tap and the bridge leaves no
/// interface behind; with and without virtio-net headers.
#[test]
fn a_stopped_guest_is_answered_for_and_summoned_and_nothing_is_left_behind() {
    if !can_run("stopped guest", &["ip", "ping"]) {
        return;
    }
    for vnet_header in [false, true] {
        on_own_thread(move || stopped_guest(vnet_header));
    }
}

fn stopped_guest(vnet_header: bool) {
    let ns = Namespaces::new();
    ns.enter_host();
    let bridge = Bridge::create(BRIDGE, HOST, 24).unwrap();
    let mut tap = ServiceTap::create(&bridge, TAP, GUEST, mac_for(GUEST), vnet_header).unwrap();
    ns.plug_client();
    let again = Bridge::create(BRIDGE, HOST, 24).unwrap_err();
    assert!(again.to_string().contains("exists already"), "{again}");

    // Another address on the network: its ARP broadcasts reach the tap
    // but neither wake the watch nor queue.
    let other = ns
        .client("ping")
        .args(["-c", "1", "-W", "1", "10.77.0.3"])
        .output()
        .unwrap();
    assert!(!other.status.success(), "nobody has 10.77.0.3");
    assert_eq!(tap.on_readable().unwrap(), vec![]);

    let mut ping = ns
        .client("ping")
        .args(["-c", "1", "-W", "1", &GUEST.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let events = watch_until_summoned(&mut tap, Duration::from_secs(5));
    let client: Ipv4Addr = CLIENT.parse().unwrap();
    assert_eq!(
        events.first(),
        Some(&TapEvent::ArpAnswered { asker: client }),
        "{events:?}"
    );
    match &events[1..] {
        [TapEvent::Summon(packet)] => {
            assert_eq!((packet.source, packet.protocol), (client, 1), "{events:?}");
        }
        other => panic!("not one summon: {other:?}"),
    }
    // Nobody answers the echo; the client knows the guest's MAC.
    assert!(!ping.wait().unwrap().success());
    let neighbour = client_neighbour(&ns);
    assert!(
        neighbour.contains("lladdr 02:6a:0a:4d:00:02"),
        "{neighbour}"
    );
    // The client asked for the guest's MAC: the guest will learn the
    // client's from that request, no introduction. The host is introduced
    // once per queue, and the watch does not take that for a request.
    assert_eq!(tap.introduce_peers(&bridge).unwrap(), 1);
    assert_eq!(tap.introduce_peers(&bridge).unwrap(), 0);
    assert_eq!(tap.on_readable().unwrap(), vec![]);
    // Queued for the guest: the ARP request, the echo request and the
    // introduction, no more.
    assert_eq!(tap.drain().unwrap(), 3);
    assert_eq!(tap.drain().unwrap(), 0);
    assert_eq!(tap.introduce_peers(&bridge).unwrap(), 1);
    assert_eq!(tap.drain().unwrap(), 1);

    // While the guest runs, the watch sees nothing, but frames queue.
    tap.set_watching(false).unwrap();
    let ping = ns
        .client("ping")
        .args(["-c", "1", "-W", "1", &GUEST.to_string()])
        .output()
        .unwrap();
    assert!(!ping.status.success());
    assert_eq!(tap.on_readable().unwrap(), vec![]);
    assert!(tap.drain().unwrap() >= 1);

    let links = ns.host_links();
    assert!(links.contains(BRIDGE) && links.contains(TAP), "{links}");
    drop(tap);
    drop(bridge);
    let links = ns.host_links();
    assert!(
        !links.contains(BRIDGE) && !links.contains(TAP),
        "left behind:\n{links}"
    );
}

/// Builds the tenders and the website image for `target` (as `lamina run`
/// builds them) and returns (tender, image).
fn tender_and_image(target: &str) -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The lamina command where the workspace's own build puts it (the test
    // build has just made it); the tenders and guests where the lamina
    // command's tests build theirs.
    let workspace_target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    // `cargo tenders` (.cargo/config.toml) builds them as `lamina run` does:
    // optimised and static.
    for (command, dir) in [
        (
            &["build", "-q", "-p", "lamina-cli"][..],
            workspace_target.clone(),
        ),
        (&["tenders", "-q"], target_dir()),
    ] {
        let built = Command::new(&cargo)
            .args(command)
            .env("CARGO_TARGET_DIR", dir)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(built.success(), "cargo {command:?} failed");
    }
    let output = Command::new(workspace_target.join("debug").join("lamina"))
        .args(["build", "--release", "-t", target, "website"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "lamina build -t {target} website: {stderr}"
    );
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("lamina: built"))
        .expect("lamina says what it built");
    let image = line
        .rsplit(": ")
        .next()
        .and_then(|p| p.split(" (").next())
        .expect("a path");
    let tender = target_dir()
        .join("x86_64-unknown-linux-gnu")
        .join("release")
        .join(format!("lamina-{target}"));
    (tender, PathBuf::from(image))
}

/// What curl reported: the body and its timings in seconds.
struct Fetched {
    body: String,
    connect: f64,
    first_byte: f64,
    total: f64,
}

/// Starts curl in the client namespace, fetching the guest's page.
fn start_curl(ns: &Namespaces) -> Child {
    ns.client("curl")
        .args(["-sS", "--max-time", "10", "-w"])
        .arg("\n@@ %{time_connect} %{time_starttransfer} %{time_total}")
        .arg(format!("http://{GUEST}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_curl(curl: Child) -> Fetched {
    let output = curl.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, times) = stdout.rsplit_once("\n@@ ").expect("curl's timings");
    let times: Vec<f64> = times
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    Fetched {
        body: body.to_owned(),
        connect: times[0],
        first_byte: times[1],
        total: times[2],
    }
}

/// The targets to run: spt, and hvt where /dev/kvm opens.
fn targets(test: &str) -> Vec<&'static str> {
    let mut targets = vec!["spt"];
    if kvm_or_skip(&format!("{test} on hvt")) {
        targets.push("hvt");
    }
    targets
}

/// A client connects to the website's address before its unikernel runs:
/// its ARP is answered, its SYN summons the service and waits in the
/// tap, the tender gets the tap and the guest answers that SYN, so curl
/// has the page in well under the 1 s a SYN retransmission would take.
/// Twice per case: the second time after the guest was stopped and the
/// tap drained, when the client and the host know the guest's MAC and ask
/// nothing, and the guest learns theirs from the daemon's introductions
/// (the host's probe must not wait a second either). spt and hvt, with and without virtio-net headers.
#[test]
fn a_client_connecting_before_the_unikernel_runs_gets_the_page_without_retransmission() {
    let test = "connect before boot";
    if !can_run(test, &["ip", "curl"]) {
        return;
    }
    for target in targets(test) {
        let (tender, image) = tender_and_image(target);
        for vnet_header in [true, false] {
            let (tender, image) = (tender.clone(), image.clone());
            on_own_thread(move || connect_before_boot(target, &tender, &image, vnet_header));
        }
    }
}

fn connect_before_boot(target: &str, tender: &Path, image: &Path, vnet_header: bool) {
    let case = format!("{target}, vnet header {vnet_header}");
    let ns = Namespaces::new();
    ns.enter_host();
    let bridge = Bridge::create(BRIDGE, HOST, 24).unwrap();
    let mut tap = ServiceTap::create(&bridge, TAP, GUEST, mac_for(GUEST), vnet_header).unwrap();
    ns.plug_client();
    let console = TempFile(tempfile_path(&format!("console-{target}-{vnet_header}")));
    let console = &console.0;
    for round in 1..=2 {
        let curl = start_curl(&ns);
        let events = watch_until_summoned(&mut tap, Duration::from_secs(5));
        let Some(TapEvent::Summon(packet)) =
            events.iter().find(|e| matches!(e, TapEvent::Summon(_)))
        else {
            panic!("{case}: no summon: {events:?}");
        };
        assert!(packet.syn && packet.port == Some(80), "{case}: {packet:?}");
        // The first time the client asks for the guest's MAC; the second
        // it knows it and sends its SYN at once, and the watch introduces it.
        let introduced = events.contains(&TapEvent::Introduced {
            peer: CLIENT.parse().unwrap(),
        });
        assert_eq!(introduced, round == 2, "{case}, round {round}: {events:?}");
        let summoned = Instant::now();

        assert_eq!(tap.introduce_peers(&bridge).unwrap(), 1, "the host");
        let fd = tap.tender_fd().unwrap();
        let mut command = Command::new(tender);
        command
            .arg("--mem=16")
            .args(tap.tender_args("service", &fd))
            .arg(image)
            .args(tap.guest_args(&bridge))
            .stdout(std::fs::File::create(console).unwrap())
            .stderr(Stdio::inherit());
        inherit_fd(&mut command, &fd);
        let guest = Guest(command.spawn().unwrap());
        drop(fd);
        let listening = boot(&mut tap, summoned + Duration::from_secs(5));
        tap.set_watching(false).unwrap();
        let fetched = finish_curl(curl);
        drop(guest);
        let listening =
            listening.unwrap_or_else(|e| panic!("{case}: {e}; console:\n{}", read(console)));
        eprintln!(
            "{case}, round {round}: listening {:.1} ms after the tender started; curl: \
             connect {:.1} ms, first byte {:.1} ms, total {:.1} ms",
            listening.as_secs_f64() * 1e3,
            fetched.connect * 1e3,
            fetched.first_byte * 1e3,
            fetched.total * 1e3
        );
        assert!(
            fetched.body.contains("Write it once. Boot it anywhere."),
            "{case}: {}",
            fetched.body
        );
        assert!(
            fetched.total < 0.9,
            "{case}: {:.3} s: a SYN was retransmitted",
            fetched.total
        );
        assert_eq!(client_syn_retransmits(&ns), 0, "{case}, round {round}");
        // The host's probe too: the second time, neither the client nor the
        // host asks for the guest's MAC, which they know, and the guest
        // learns theirs from the introductions.
        assert!(
            listening < Duration::from_millis(900),
            "{case}: the probe waited {listening:?}"
        );
        // Stopped: watch again, and forget what the old guest left.
        tap.set_watching(true).unwrap();
        tap.drain().unwrap();
    }
    drop(tap);
    drop(bridge);
    let links = ns.host_links();
    assert!(
        !links.contains(BRIDGE) && !links.contains(TAP),
        "{case}: left behind:\n{links}"
    );
}

/// What the daemon does while a guest boots: probes it, and handles what
/// the tap's watch sees meanwhile; the time to listening, or an error at
/// `deadline`.
fn boot(tap: &mut ServiceTap, deadline: Instant) -> std::io::Result<Duration> {
    let mut probe = Probe::start(SocketAddrV4::new(GUEST, 80))?;
    loop {
        if let Some(took) = probe.poll()? {
            return Ok(took);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(std::io::Error::other(format!(
                "not listening after {} attempts",
                probe.attempts()
            )));
        }
        let mut fds = [
            libc::pollfd {
                fd: tap.watch_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: probe.fd().unwrap_or(-1),
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        let wait = probe
            .next_check()
            .min(deadline)
            .saturating_duration_since(now);
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: poll reads and writes the two pollfds, which live for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        if fds[0].revents != 0 {
            // New peers get introduced; summons are old news.
            tap.on_readable()?;
        }
    }
}

/// A running tender, killed on drop (on success and on failure).
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lamina-jitsu-tap-{}-{name}", std::process::id()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The variable that makes [`without_root_tap_mode_says_to_use_user_mode`]
/// the unprivileged child it starts.
const UNPRIVILEGED: &str = "LAMINA_JITSU_TAP_UNPRIVILEGED";

/// Without root (this test binary run again as nobody), creating the
/// bridge fails with an error that says what to do instead.
#[test]
fn without_root_tap_mode_says_to_use_user_mode() {
    if std::env::var_os(UNPRIVILEGED).is_some() {
        // The child: no capability, so nothing can be created anywhere.
        let e = Bridge::create("ljt-noroot", HOST, 24).unwrap_err();
        println!("ERROR: {e}");
        return;
    }
    if !can_run("without root", &["setpriv"]) {
        return;
    }
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "without_root_tap_mode_says_to_use_user_mode"])
        .args(["--nocapture", "--test-threads=1"])
        .env(UNPRIVILEGED, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success()
            && stdout.contains(
                "ERROR: creating bridge ljt-noroot: tap mode needs root (CAP_NET_ADMIN); \
                 use network = \"user\""
            ),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
