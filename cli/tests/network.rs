//! Lamina's TCP/IP stack in unikernels, against real peers: each test
//! makes a network namespace with a tap device, boots the echo unikernel on
//! the tap (spt and hvt), and talks to it with ping, nc, echo-load, dnsmasq
//! and deliberately malformed traffic. Traffic stays inside the namespace.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn targets(test: &str) -> Vec<&'static str> {
    unikernel_targets(test)
}

/// Root and the tools these tests need, or a plain message why not.
fn can_run(test: &str) -> bool {
    can_use_namespaces(test, &["ip", "ping", "nc"])
}

/// A network namespace with tap0 at 10.N.0.1/24 (N from 100); removed,
/// with the guest, on drop.
fn namespace() -> Namespace {
    Namespace::new("lamina-t", 100)
}

/// Runs echo-load inside `ns` against `ip`:7 with `options` (connections,
/// bytes and so on) and says whether all `connections` were echoed back
/// byte for byte; its report is in the test's output either way.
fn echo_load(ns: &Namespace, ip: &str, connections: u32, options: &[&str]) -> bool {
    let load = release_dir().join("echo-load");
    let (server, connections) = (format!("{ip}:7"), connections.to_string());
    let mut args = vec![
        load.to_str().unwrap(),
        &server,
        "--connections",
        &connections,
    ];
    args.extend(options);
    let out = ns.exec(&args);
    out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{connections}/{connections} connections"))
}

/// Boots the echo unikernel on tap0 with `guest_args`; its console goes to `log`.
fn boot_echo(ns: &mut Namespace, target: &str, guest_args: &[&str], log: &Path) {
    boot(ns, target, "echo", "64", guest_args, log);
}

/// Boots `app` in `target`'s tender on tap0 with `mem` MiB and
/// `guest_args`; console to `log`.
fn boot(ns: &mut Namespace, target: &str, app: &str, mem: &str, guest_args: &[&str], log: &Path) {
    let mut guest = ns.command(tender(target));
    guest
        .arg(format!("--mem={mem}"))
        .arg("--net:service=tap0")
        .arg(image(target, app))
        .args(guest_args);
    ns.start_guest(guest, log);
}

#[test]
fn echo_unikernel_serves_real_clients_over_a_tap() {
    if !can_run("echo over tap") {
        return;
    }
    for target in targets("echo over tap") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let address = format!("--ipv4={}/24", ns.guest_ip());
        boot_echo(&mut ns, target, &[&address], &dir.path().join("console"));
        ns.wait_for_echo(Duration::from_secs(30));
        let ip = ns.guest_ip();
        // A second unikernel on the tap in use is refused, saying why.
        let second = ns
            .command(tender(target))
            .args(["--mem=8", "--net:service=tap0"])
            .arg(image(target, "echo"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{target}: {said}");
        assert!(said.contains("another process"), "{target}: {said}");
        // ping: ICMP echo answered by the stack.
        let ping = ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip]);
        assert!(ping.status.success(), "{target}: ping failed");
        // nc over TCP and UDP.
        let tcp = ns.sh(&format!("printf 'hello tcp\\n' | nc -N -w 3 {ip} 7"));
        assert_eq!(
            String::from_utf8_lossy(&tcp.stdout),
            "hello tcp\n",
            "{target}"
        );
        let udp = ns.sh(&format!("printf 'hello udp\\n' | nc -u -w 1 {ip} 7"));
        assert_eq!(
            String::from_utf8_lossy(&udp.stdout),
            "hello udp\n",
            "{target}"
        );
        // 1,000 parallel connections, each with its own pattern, all echoed.
        assert!(
            echo_load(&ns, &ip, 1000, &["--bytes", "4000", "--udp", "100"]),
            "{target}: echo-load failed"
        );
        // Bulk in one connection: on spt the tap carries checksum and
        // segmentation offload (64 KiB segments both ways), checked here
        // byte for byte by echo-load.
        assert!(
            echo_load(&ns, &ip, 1, &["--bytes", "20000000"]),
            "{target}: bulk echo failed"
        );
        // After the traffic the unikernel sleeps: under 10% of a CPU.
        let busy = cpu_seconds_over(ns.guest_pid(), Duration::from_secs(2)) / 2.0;
        assert!(
            busy < 0.10,
            "{target}: the idle unikernel used {:.0}% of a CPU",
            busy * 100.0
        );
        let console = std::fs::read_to_string(dir.path().join("console")).unwrap();
        // IPv6: neighbour discovery and ICMPv6 echo on the link-local address
        // the unikernel printed at boot.
        let link_local = console
            .split_whitespace()
            .find(|w| w.starts_with("fe80::"))
            .unwrap_or_else(|| panic!("{target}: no IPv6 address printed:\n{console}"))
            .trim_end_matches(',')
            .to_owned();
        let ping6 = ns.exec(&[
            "ping",
            "-6",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            &format!("{link_local}%tap0"),
        ]);
        assert!(
            ping6.status.success(),
            "{target}: no ICMPv6 echo reply from {link_local}"
        );
        assert!(
            console.contains(&format!("{ip}/24")),
            "{target}: the address in use is not printed:\n{console}"
        );
    }
}

#[test]
fn hvt_stats_split_the_vcpu_time_into_work_polls_and_exits() {
    if !can_run("hvt --x-stats over tap") || !kvm_or_skip("hvt --x-stats over tap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut ns = namespace();
    let mut guest = ns.command(tender("hvt"));
    guest
        .args(["--mem=64", "--net:service=tap0", "--x-stats"])
        .arg(image("hvt", "echo"))
        .arg(format!("--ipv4={}/24", ns.guest_ip()));
    ns.start_guest(guest, &log);
    ns.wait_for_echo(Duration::from_secs(30));
    let ip = ns.guest_ip();
    assert!(
        echo_load(&ns, &ip, 200, &["--bytes", "20000"]),
        "echo-load failed"
    );
    // The report comes when the tender stops.
    let pid = ns.guest_pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    while ns.guest_alive() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the tender did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = std::fs::read_to_string(&log).unwrap();
    let guest = report
        .lines()
        .find(|line| line.starts_with("lamina-hvt: guest: "))
        .unwrap_or_else(|| panic!("no report of the guest's waits in:\n{report}"));
    eprintln!("{guest}");
    let work = number_before(guest, "s of its own work");
    let polling = number_before(guest, "s polling its queues");
    let polls = number_before(guest, "polls,");
    let caught = number_before(guest, "found input");
    let sleeps = number_before(guest, "POLLs,");
    let switches = number_before(guest, "s the exits and returns");
    let per_switch = number_before(guest, "us each)");
    let in_run = number_before(&report, "s in KVM_RUN");
    // The guest slept (it was idle before and after the load) and did
    // work; its polls, their catches and its sleeps are consistent with
    // the tender's own figures.
    assert!(work > 0.0 && sleeps >= 1.0, "{guest}");
    assert!(caught <= polls, "{guest}");
    // The guest's view of its POLLs (its TSC clock) exceeds the tender's
    // handling of them (the host's clock) by the world switches: more
    // than nothing, less than a millisecond each (tens of us here, a few
    // on bare-metal KVM). Zero would mean the clocks disagree or the
    // tender counted a POLL the guest did not.
    assert!(per_switch > 0.0 && per_switch < 1000.0, "{guest}");
    assert!(
        sleeps <= number_before(&report, "VM exits to the tender"),
        "{report}"
    );
    // The guest's polls (its clock) and the world switches (its view of
    // the POLLs less the tender's handling of them) fit in the time the
    // tender saw the vCPU in KVM_RUN (its clock).
    assert!(polling + switches <= in_run * 1.05 + 0.01, "{report}");
}

#[test]
fn dhcp_gives_the_unikernel_its_address() {
    if !can_use_namespaces("dhcp", &["ip", "ping", "nc", "dnsmasq"]) {
        return;
    }
    for target in targets("dhcp") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let range = format!("10.{0}.0.50,10.{0}.0.60,255.255.255.0,1h", ns.subnet);
        let leases = dir.path().join("leases");
        let pid_file = dir.path().join("dnsmasq.pid");
        let dnsmasq = ns.exec(&[
            "dnsmasq",
            "--interface=tap0",
            "--bind-interfaces",
            "--port=0",
            &format!("--dhcp-range={range}"),
            // DNS is off (--port=0), so option 6 is sent only as told.
            &format!(
                "--dhcp-option=option:dns-server,10.{0}.0.1,10.{0}.0.53",
                ns.subnet
            ),
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", pid_file.display()),
        ]);
        assert!(dnsmasq.status.success(), "dnsmasq did not start");
        let console = dir.path().join("console");
        boot_echo(&mut ns, target, &[], &console);
        let start = Instant::now();
        let address = loop {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("DHCP gave")) {
                break line
                    .split("DHCP gave ")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{target}: no DHCP lease:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            address.starts_with(&format!("10.{}.0.", ns.subnet)),
            "{address}"
        );
        // Option 6: the stack took the DNS servers of the lease, which its
        // resolvers then ask (Stack::dns_servers).
        let text = std::fs::read_to_string(&console).unwrap();
        let servers = format!("DNS servers [10.{0}.0.1, 10.{0}.0.53]", ns.subnet);
        assert!(text.contains(&servers), "{target}: no '{servers}':\n{text}");
        let tcp = ns.sh(&format!("printf 'leased\\n' | nc -N -w 3 {address} 7"));
        assert_eq!(String::from_utf8_lossy(&tcp.stdout), "leased\n", "{target}");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// A tap opened by the parent and inherited as `--net:NAME=fd:N` (as Jitsu
/// hands taps over): plain, and with virtio-net headers of the usual
/// length and of virtio 1.0's, which the tender detects and serves with
/// offloads as it does the taps it opens itself. Bulk echo checks the
/// large segments the host then sends byte for byte.
#[test]
fn an_inherited_tap_serves_with_and_without_virtio_net_headers() {
    if !can_use_namespaces("inherited tap", &["ip", "nc", "python3"]) {
        return;
    }
    let opener = root().join("cli").join("tests").join("inherit_tap.py");
    for target in targets("inherited tap") {
        for mode in ["plain", "vnet:10", "vnet:12"] {
            let dir = tempfile::tempdir().unwrap();
            let mut ns = namespace();
            let address = format!("--ipv4={}/24", ns.guest_ip());
            let tender = tender(target);
            let mut guest = ns.command("python3");
            guest
                .arg(&opener)
                .args(["tap0", mode])
                .arg(tender)
                .args(["--mem=64", "--net:service=fd:@"])
                .arg(image(target, "echo"))
                .arg(&address);
            let console = dir.path().join("console");
            ns.start_guest(guest, &console);
            ns.wait_for_echo(Duration::from_secs(30));
            let ip = ns.guest_ip();
            let tcp = ns.sh(&format!("printf 'inherited\\n' | nc -N -w 3 {ip} 7"));
            assert_eq!(
                String::from_utf8_lossy(&tcp.stdout),
                "inherited\n",
                "{target} {mode}"
            );
            assert!(
                echo_load(&ns, &ip, 4, &["--bytes", "2000000"]),
                "{target} {mode}: bulk echo failed: {}",
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
    }
}

/// The zone Knot serves to the resolver tests: an alias chain, an IPv6
/// address, and a TXT RRset of about 2,400 bytes that only TCP carries.
fn resolver_zone() -> String {
    let mut zone = String::from(
        "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns admin 1 3600 600 86400 60\n@ NS ns\n\
         ns A 10.0.0.1\nwww A 192.0.2.1\nwww AAAA 2001:db8::1\nalias CNAME alias2\nalias2 CNAME www\n",
    );
    for i in 0..12 {
        zone.push_str(&format!("big TXT \"{i:02}{}\"\n", "x".repeat(198)));
    }
    zone
}

/// A Knot DNS server (knotd) in `ns` on `address` port 53 with
/// [`resolver_zone`], its files in `dir`; killed on drop.
struct Knot(std::process::Child);

impl Knot {
    fn start(ns: &Namespace, dir: &Path, address: &str) -> Knot {
        std::fs::write(dir.join("example.test.zone"), resolver_zone()).unwrap();
        let config = format!(
            "server:\n    listen: {address}@53\n    rundir: {d}\n    pidfile: {d}/knot.pid\n\
             database:\n    storage: {d}\nlog:\n  - target: stderr\n    any: info\n\
             template:\n  - id: default\n    storage: {d}\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n  - domain: example.test\n    file: example.test.zone\n",
            d = dir.display()
        );
        std::fs::write(dir.join("knot.conf"), config).unwrap();
        let log = std::fs::File::create(dir.join("knot.log")).unwrap();
        let child = ns
            .command("knotd")
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let knot = Knot(child);
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(dir.join("knot.log")).unwrap_or_default();
            if log.contains("[example.test.] loaded") {
                return knot;
            }
            assert!(
                !log.contains("critical") && start.elapsed() < Duration::from_secs(20),
                "knotd did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// lamina-dns's stub resolver in a unikernel, on Lamina's stack: it asks a
/// Knot server in the namespace, named by `--dns` and then by DHCP (option
/// 6), for addresses (A and AAAA, through a CNAME chain), a name that does
/// not exist, and a TXT RRset that comes truncated over UDP and whole over
/// TCP.
#[test]
fn the_resolver_in_a_unikernel_asks_knot_named_by_dns_or_dhcp() {
    if !can_use_namespaces("resolver", &["ip", "knotd", "dnsmasq"]) {
        return;
    }
    for target in targets("resolver") {
        for how in ["--dns", "dhcp"] {
            let dir = tempfile::tempdir().unwrap();
            let mut ns = namespace();
            let host = format!("10.{}.0.1", ns.subnet);
            let _knot = Knot::start(&ns, dir.path(), &host);
            let mut guest_args = vec![
                String::from("--names=www.example.test,Alias.example.test.,nope.example.test"),
                String::from("--txt=big.example.test"),
            ];
            let pid_file = dir.path().join("dnsmasq.pid");
            if how == "--dns" {
                guest_args.push(format!("--ipv4={}/24", ns.guest_ip()));
                guest_args.push(format!("--dns={host}"));
            } else {
                let range = format!("10.{0}.0.50,10.{0}.0.60,255.255.255.0,1h", ns.subnet);
                let dnsmasq = ns.exec(&[
                    "dnsmasq",
                    "--interface=tap0",
                    "--bind-interfaces",
                    "--port=0",
                    &format!("--dhcp-range={range}"),
                    &format!("--dhcp-option=option:dns-server,{host}"),
                    &format!("--dhcp-leasefile={}", dir.path().join("leases").display()),
                    &format!("--pid-file={}", pid_file.display()),
                ]);
                assert!(dnsmasq.status.success(), "dnsmasq did not start");
            }
            let guest_args: Vec<&str> = guest_args.iter().map(String::as_str).collect();
            let console = dir.path().join("console");
            boot(
                &mut ns,
                target,
                "tests/guests/resolve",
                "64",
                &guest_args,
                &console,
            );
            let start = Instant::now();
            while ns.guest_alive() && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let text = std::fs::read_to_string(&console).unwrap();
            assert!(!ns.guest_alive(), "{target} {how}: still running:\n{text}");
            for expected in [
                format!("resolve: servers [{host}:53]"),
                String::from("resolve: www.example.test = 192.0.2.1 2001:db8::1"),
                String::from("resolve: Alias.example.test. = 192.0.2.1 2001:db8::1"),
                String::from("resolve: nope.example.test: no such name"),
                String::from("resolve: big.example.test has 12 TXT records, 2412 bytes"),
            ] {
                assert!(
                    text.contains(&expected),
                    "{target} {how}: no '{expected}':\n{text}"
                );
            }
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

#[test]
fn malformed_traffic_is_dropped_and_the_unikernel_keeps_serving() {
    if !can_run("malformed traffic") {
        return;
    }
    for target in targets("malformed traffic") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let address = format!("--ipv4={}/24", ns.guest_ip());
        boot_echo(
            &mut ns,
            target,
            &[&address, "--tcp-backlog=64"],
            &dir.path().join("console"),
        );
        ns.wait_for_echo(Duration::from_secs(30));
        let ip = ns.guest_ip();
        // Raw frames out of tap0: truncated and corrupt headers, bad
        // checksums and options, overlapping fragments, random bytes.
        let script = root().join("cli").join("tests").join("bad_frames.py");
        let out = ns.exec(&["python3", script.to_str().unwrap(), "tap0", &ip]);
        assert!(out.status.success(), "{target}: the frame generator failed");
        // A SYN flood, where hping3 is installed; a small backlog makes sure
        // it overflows, and the drops must be counted and reported.
        let mut flooded = false;
        if tools_or_skip(&format!("the SYN flood part on {target}"), &["hping3"]) {
            ns.exec(&[
                "timeout", "5", "hping3", "-S", "-p", "7", "--faster", "-c", "20000", &ip,
            ]);
            flooded = true;
        }
        assert!(ns.guest_alive(), "{target}: the unikernel died");
        // It still serves real clients.
        assert!(
            echo_load(&ns, &ip, 50, &["--bytes", "10000", "--timeout", "40"]),
            "{target}: echo no longer works after malformed traffic"
        );
        let console = std::fs::read_to_string(dir.path().join("console")).unwrap();
        if flooded {
            assert!(
                console.contains("SYNs to full accept queues"),
                "{target}: the dropped SYNs were not reported:\n{console}"
            );
        }
        if target == "spt" {
            // With checksum offload the spt guest checks TCP/UDP checksums
            // itself: the bad ones among the frames were dropped and counted.
            let dropped = dropped_frames(&console);
            assert!(
                dropped.is_some_and(|n| n > 0),
                "{target}: no dropped frames reported:\n{console}"
            );
        }
        assert!(!console.contains("panic"), "{target}: {console}");
    }
}

/// User-mode networking: no root, no tap, no namespace; the tender forwards
/// a loopback port to the unikernel, reached with nc and echo-load.
#[test]
fn user_mode_network_reaches_the_unikernel_on_loopback() {
    for target in targets("user-mode network") {
        let port = free_port();
        let forward = format!("{port}:7");
        let mut server =
            Server::start(&["run", "--release", "-t", target, "echo", "--port", &forward]);
        server.wait_for_port(port, Duration::from_secs(300));
        // The tender accepts on loopback at once; wait for the guest itself.
        let start = Instant::now();
        loop {
            let out = Command::new("sh")
                .args([
                    "-c",
                    &format!("printf 'hi\\n' | nc -N -w 2 127.0.0.1 {port}"),
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout) == "hi\n" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{target}: no echo through the forward"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let load = release_dir().join("echo-load");
        let out = Command::new(load)
            .args([
                &format!("127.0.0.1:{port}"),
                "--connections",
                "50",
                "--bytes",
                "20000",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("50/50 connections"),
            "{target}"
        );
    }
}

/// A free UDP port on loopback (the kernel's choice; released before use).
/// A port on 127.0.0.1 free for UDP and for TCP: on unix the echo
/// application binds both (CI saw "echo: error: address in use" when only
/// the UDP port had been free).
fn free_udp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A UDP client on loopback sending to `port`.
fn udp_client(port: u16) -> std::net::UdpSocket {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
}

/// Sends `payload` until its echo comes back, at most `tries` times. A
/// late echo of this client's earlier try (its first byte the same: each
/// client's payloads start with a byte of its own) is skipped; anything
/// else was meant for another client.
fn udp_echo(socket: &std::net::UdpSocket, payload: &[u8], tries: u32) -> bool {
    let mut buf = vec![0u8; 65536];
    for _ in 0..tries {
        socket.send(payload).unwrap();
        while let Ok(n) = socket.recv(&mut buf) {
            if &buf[..n] == payload {
                return true;
            }
            assert_eq!(buf[0], payload[0], "a datagram meant for another client");
        }
    }
    false
}

/// User-mode networking forwards UDP too (`--port HOST:GUEST/udp`) on spt
/// and hvt, as unix's host sockets do: nc and several clients at once each
/// get their own echoes, the largest datagram a frame holds comes back
/// whole; a protocol other than tcp or udp is refused when the command
/// line is read.
#[test]
fn user_mode_network_forwards_udp_to_each_client() {
    let refused = run_lamina(&["run", "-t", "spt", "echo", "--port", "5353:53/sctp"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("unknown protocol 'sctp' (tcp or udp)"),
        "{message}"
    );
    // On unix the application's own socket is the host's: the same port
    // on both sides, and the application told to listen there.
    let mut all = targets("user-mode UDP forward");
    all.push("unix");
    for target in all {
        let port = free_udp_port();
        let (forward, listen) = if target == "unix" {
            (format!("{port}:{port}/udp"), format!("--port={port}"))
        } else {
            (format!("{port}:7/udp"), String::from("--port=7"))
        };
        let mut server = Server::start(&[
            "run",
            "--release",
            "-t",
            target,
            "echo",
            "--port",
            &forward,
            "--",
            &listen,
        ]);
        // The first run builds the image: wait for the guest's first echo.
        let first = udp_client(port);
        let start = Instant::now();
        while !udp_echo(&first, b"ready?", 1) {
            server.assert_running(target);
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{target}: no UDP echo through the forward"
            );
        }
        let out = Command::new("sh")
            .args([
                "-c",
                &format!("printf 'hello udp\\n' | nc -u -w 1 127.0.0.1 {port}"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello udp\n",
            "{target}: nc -u"
        );
        // The largest UDP payload one 1500-byte frame holds.
        let big: Vec<u8> = (0..1472u32)
            .map(|i| b'r'.wrapping_add((i * 7) as u8))
            .collect();
        assert!(
            udp_echo(&first, &big, 10),
            "{target}: no echo of 1472 bytes"
        );
        // Sixteen clients at once, each its own payloads.
        let clients: Vec<_> = (0..16u8)
            .map(|c| {
                std::thread::spawn(move || {
                    let socket = udp_client(port);
                    for i in 0..30usize {
                        let payload = vec![b'A' + c; 20 + i * 40];
                        assert!(udp_echo(&socket, &payload, 10), "client {c}: no echo");
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client failed");
        }
    }
}

/// Ten thousand connections open at once in a 64 MiB unikernel: the
/// stack's buffer budget shrinks buffers instead of running out of memory.
#[test]
fn ten_thousand_concurrent_connections_in_64_mib() {
    if !can_run("10,000 connections") {
        return;
    }
    for target in targets("10,000 connections") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let address = format!("--ipv4={}/24", ns.guest_ip());
        boot_echo(&mut ns, target, &[&address], &dir.path().join("console"));
        ns.wait_for_echo(Duration::from_secs(30));
        let script = root().join("cli").join("tests").join("many_connections.py");
        let out = ns.exec(&["python3", script.to_str().unwrap(), &ns.guest_ip(), "10000"]);
        assert!(
            out.status.success(),
            "{target}: not all 10,000 connections echoed"
        );
        assert!(ns.guest_alive(), "{target}: the unikernel died");
    }
}

/// The website unikernel over a tap in 8 MiB of guest memory, reached with
/// curl from the namespace (the user-mode path is in tests/website.rs).
#[test]
fn website_over_a_tap_in_8_mib() {
    if !can_run("website over tap") {
        return;
    }
    for target in targets("website over tap") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let address = format!("--ipv4={}/24", ns.guest_ip());
        boot(
            &mut ns,
            target,
            "website",
            "8",
            &[&address],
            &dir.path().join("console"),
        );
        let url = format!("http://{}/", ns.guest_ip());
        let page = ns.wait_for(
            &format!("curl -sS --max-time 2 -i {url}"),
            "HTTP/1.1 200",
            Duration::from_secs(30),
        );
        assert!(page.starts_with("HTTP/1.1 200"), "{target}: {page}");
        assert!(
            page.contains("Write it once. Boot it anywhere."),
            "{target}"
        );
        let range = ns.exec(&["curl", "-sS", "-i", "-r", "0-4", &format!("{url}style.css")]);
        assert!(
            String::from_utf8_lossy(&range.stdout).starts_with("HTTP/1.1 206"),
            "{target}"
        );
        assert!(ns.guest_alive(), "{target}");
    }
}

/// Connections past the larger buffer tiers (here after a few, with a
/// 1 MiB --tcp-memory; at the defaults after about 150 open at once) get
/// the smallest send buffer. It must hold more than one full segment: a
/// Linux client acknowledges a keep-alive response at once only when
/// more than one segment's worth is unacknowledged, else after its 40 ms
/// delayed-ACK timer, and a page larger than the buffer then waited that
/// long for every window (with 1 KiB buffers, 44 ms a request; wrk -c50
/// served 1,135 req/s instead of 47,000 behind 500 idle connections).
#[test]
fn responses_on_the_smallest_buffers_do_not_wait_for_delayed_acks() {
    if !can_use_namespaces("smallest TCP buffers", &["ip", "curl", "python3"]) {
        return;
    }
    for target in targets("smallest TCP buffers") {
        let dir = tempfile::tempdir().unwrap();
        let mut ns = namespace();
        let ip = ns.guest_ip();
        let address = format!("--ipv4={ip}/24");
        let guest_args = [address.as_str(), "--tcp-memory=1048576"];
        boot(
            &mut ns,
            target,
            "website",
            "64",
            &guest_args,
            &dir.path().join("console"),
        );
        let url = format!("http://{ip}/");
        ns.wait_for(
            &format!("curl -sS --max-time 2 -o /dev/null -w '%{{http_code}}' {url}"),
            "200",
            Duration::from_secs(30),
        );
        // 40 idle connections take the larger tiers; then 30 requests for
        // the 1.5 KB home page (more than 1 KiB with its headers) on one
        // kept-alive connection, each timed by curl.
        let requests = format!("-o /dev/null {url} ").repeat(30);
        let script = format!(
            "python3 -c 'import socket, time
s = [socket.create_connection((\"{ip}\", 80)) for _ in range(40)]
print(\"open\", flush=True)
time.sleep(60)' > idle.out &
for i in $(seq 100); do grep -q open idle.out && break; sleep 0.1; done
curl -sS -w 'took %{{time_total}}\\n' {requests}
kill $!"
        );
        let out = ns.sh(&format!("cd {} && {script}", dir.path().display()));
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut took: Vec<f64> = report
            .lines()
            .filter_map(|line| line.strip_prefix("took ")?.parse().ok())
            .collect();
        assert_eq!(
            took.len(),
            30,
            "{target}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took.sort_by(f64::total_cmp);
        let median = took[took.len() / 2];
        assert!(
            median < 0.010,
            "{target}: the median request took {:.1} ms (a client's delayed ACK is 40 ms): {took:?}",
            median * 1000.0
        );
        assert!(ns.guest_alive(), "{target}");
    }
}

/// `lamina net up` makes a tap (and its namespace) whose queue holds
/// 10,000 frames, not Linux's 1,000: a burst of clients' frames must not
/// be dropped while the unikernel's reader waits for a CPU. `lamina net
/// down` removes both.
#[test]
fn lamina_net_up_makes_a_tap_with_a_long_queue_and_down_removes_it() {
    if !can_use_namespaces("lamina net up", &["ip"]) {
        return;
    }
    let ns = format!("lnq-{}", std::process::id() % 1_000_000);
    let address = "10.231.0.1/24";
    let up = run_lamina(&["net", "up", "lnq0", "--address", address, "--netns", &ns]);
    let link = Command::new("ip")
        .args(["-n", &ns, "-d", "link", "show", "lnq0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    // Removed before the checks, so that a failure leaves nothing behind.
    let down = run_lamina(&["net", "down", "lnq0", "--netns", &ns]);
    assert!(
        up.status.success(),
        "lamina net up failed (its output above)"
    );
    assert!(
        link.contains("qlen 10000") && link.contains("tun type tap"),
        "{link}"
    );
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    assert!(down.status.success(), "lamina net down failed");
    assert!(!Path::new("/run/netns").join(&ns).exists());
}
