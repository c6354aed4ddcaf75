//! The unix target through the `lamina` command: new, build, run, describe.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn new_project_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("greeter");
    let app = app.to_str().unwrap();
    let created = run_lamina(&["new", "greeter", "--path", app]);
    assert!(created.status.success());
    let output = run_lamina(&["run", "-t", "unix", app, "--", "--who=tests", "--times=2"]);
    assert!(output.status.success(), "run failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout, "Hello, tests! (1/2)\nHello, tests! (2/2)\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("running greeter on unix"), "{stderr}");
    assert!(stderr.contains("start-up took"), "{stderr}");
    // A second `new` into the same place refuses and keeps what is there.
    let again = run_lamina(&["new", "greeter", "--path", app]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn new_rejects_bad_names() {
    for name in ["1abc", "a b", "../x", ""] {
        let output = run_lamina(&["new", name, "--path", "/nonexistent/never-created"]);
        assert_eq!(output.status.code(), Some(2), "{name}");
    }
}

#[test]
fn hello_prints_its_greeting_once_a_second_and_exits_0() {
    let start = Instant::now();
    let output = run_lamina(&[
        "run",
        "-t",
        "unix",
        "hello",
        "--",
        "--greeting=Hi there",
        "--times=3",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hi there (1/3)\nHi there (2/3)\nHi there (3/3)\n"
    );
    // Three lines, one a second: at least two seconds pass between first and last.
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[test]
fn bad_boot_arguments_give_a_message_and_status_2() {
    let cases = [
        (vec!["--colour=red"], "unknown argument '--colour'"),
        (vec!["--times=-1"], "invalid value '-1' for '--times'"),
        (vec!["--times"], "'--times' needs a value"),
        (vec!["stray"], "unexpected argument 'stray'"),
        (vec!["--log=loud"], "invalid value 'loud' for '--log'"),
    ];
    for (args, message) in cases {
        let mut full = vec!["run", "-t", "unix", "hello", "--"];
        full.extend(args);
        let output = run_lamina(&full);
        assert_eq!(output.status.code(), Some(2), "{full:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{full:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn help_lists_application_device_and_runtime_arguments() {
    let output = run_lamina(&["run", "-t", "unix", "echo", "--", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--port=N",
        "[default: 7]",
        "--block:NAME=FILE",
        "--log=TEXT",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

fn echo_once(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let payload = payload.to_vec();
        std::thread::spawn(move || {
            stream.write_all(&payload).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    echoed
}

#[test]
fn echo_serves_100_concurrent_connections() {
    let port = free_port();
    let mut server = Server::start(&["run", "-t", "unix", "echo", "--", &format!("--port={port}")]);
    server.wait_for_port(port, Duration::from_secs(300));
    let clients: Vec<_> = (0..100u32)
        .map(|i| {
            std::thread::spawn(move || {
                // Distinct payloads of different sizes, up to 256 KiB, so that
                // mixed-up or truncated streams cannot pass.
                let payload: Vec<u8> = (0..(i as usize + 1) * 2600)
                    .map(|j| (j as u32 * 7 + i) as u8)
                    .collect();
                (echo_once(port, &payload) == payload, payload.len())
            })
        })
        .collect();
    let mut ok = 0;
    for client in clients {
        let (same, len) = client.join().unwrap();
        assert!(same, "a {len}-byte echo came back different");
        ok += 1;
    }
    assert_eq!(ok, 100);
}

#[test]
fn echo_answers_nc() {
    if !tools_or_skip("echo answering nc", &["nc"]) {
        return;
    }
    let port = free_port();
    let mut server = Server::start(&["run", "-t", "unix", "echo", "--", &format!("--port={port}")]);
    server.wait_for_port(port, Duration::from_secs(300));
    let mut nc = Command::new("nc")
        .args(["-N", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    nc.stdin
        .take()
        .unwrap()
        .write_all(b"hello, unikernel\nsecond line\n")
        .unwrap();
    let output = nc.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello, unikernel\nsecond line\n"
    );
}

#[test]
fn echo_on_a_taken_port_fails_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = run_lamina(&["run", "-t", "unix", "echo", "--", &format!("--port={port}")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("address in use"));
}

#[test]
fn unavailable_targets_and_devices_say_so() {
    // A device the image does not declare is refused before QEMU starts
    // (which would attach it, and as root create the tap).
    let output = run_lamina(&[
        "run",
        "--target",
        "virtio",
        "hello",
        "--",
        "--net:service=tap0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hello declares no net device 'service' (it declares: none)"),
        "{stderr}"
    );
    // A tap that is not there, for an image that declares the device.
    let output = run_lamina(&[
        "run",
        "--target",
        "virtio",
        "echo",
        "--",
        "--net:service=nosuchtap9",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no interface nosuchtap9"), "{stderr}");
    let output = run_lamina(&["build", "--target", "xen", "hello"]);
    assert_eq!(output.status.code(), Some(2));
}

/// Runs graphviz's `dot` on `graph`; panics if it refuses it. Without
/// `dot` the check is skipped, and under CI that fails.
fn check_with_graphviz(graph: &str) {
    if !tools_or_skip("checking the DOT with Graphviz", &["dot"]) {
        return;
    }
    let mut check = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(graph.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "graphviz rejected the DOT: {}\n{graph}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("<svg"));
}

#[test]
fn describe_draws_the_device_graph() {
    let text = run_lamina(&["describe", "echo"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(
        text,
        "echo on unix\n└─ Stack \"service\" → host sockets (the kernel's TCP/IP)\n"
    );
    let dot = run_lamina(&["describe", "--dot", "-t", "hvt", "examples/echo"]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.starts_with("digraph \"echo on hvt\""), "{dot}");
    check_with_graphviz(&dot);
}

/// The website's graph has the HTTP library between the application and
/// the stack and clock it sits on (read from lamina-http's Cargo metadata),
/// and the stack over the network interface on a unikernel target.
#[test]
fn describe_draws_libraries_between_the_application_and_its_devices() {
    let text = run_lamina(&["describe", "-t", "spt", "website"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let stack = "Stack \"service\" → lamina-net (smoltcp): TCP, UDP, IPv4, IPv6, DHCP → Solo5 net \"service\" → tap";
    let expected = [
        "website on spt",
        "├─ lamina-crunch (gives KvRead)",
        "├─ lamina-http (over Stack, Clock)",
        "│  ├─ Clock → clock_gettime(2), pinned by seccomp",
        &format!("│  ├─ {stack}"),
        // HTTPS: lamina-http's Upgrade for TLS, and the website's own use.
        "│  └─ lamina-tls (over Stack, Clock, Random)",
        "│     ├─ Clock → clock_gettime(2), pinned by seccomp",
        &format!("│     └─ {stack}"),
        "└─ lamina-tls (over Stack, Clock, Random)",
        "   ├─ Clock → clock_gettime(2), pinned by seccomp",
        &format!("   └─ {stack}"),
    ];
    for (line, want) in text.lines().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} is not {want:?} in\n{text}"
        );
    }
    assert_eq!(text.lines().count(), expected.len(), "{text}");

    let dot = run_lamina(&["describe", "--dot", "-t", "spt", "website"]);
    let dot = String::from_utf8_lossy(&dot.stdout).into_owned();
    check_with_graphviz(&dot);
    // The edges, by label: application → http → stack → lamina-net → Solo5 net.
    let id = |label: &str| -> String {
        let line = dot
            .lines()
            .find(|l| l.contains(&format!("[label=\"{label}")))
            .unwrap_or_else(|| panic!("no node {label} in\n{dot}"));
        line.trim().split(' ').next().unwrap().to_owned()
    };
    let edge = |from: &str, to: &str| format!("{} -> {};", id(from), id(to));
    for (from, to) in [
        ("website (spt)", "lamina-http"),
        ("lamina-http", "Stack \\\"service\\\""),
        ("lamina-http", "Clock"),
        ("lamina-http", "lamina-tls"),
        ("Stack \\\"service\\\"", "lamina-net"),
        ("lamina-net", "Solo5 net"),
    ] {
        assert!(
            dot.contains(&edge(from, to)),
            "no edge {from} -> {to} in\n{dot}"
        );
    }
}

/// A new application's devices are declared once, in the source: a
/// misspelt device kind, a name the manifest cannot hold and a device used
/// but not declared all fail the build with a message saying which; a
/// declared device that is not attached stops the start before `main`.
#[test]
fn device_mistakes_fail_the_build_and_missing_devices_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("devices");
    let app = app.to_str().unwrap();
    assert!(run_lamina(&["new", "devices", "--path", app])
        .status
        .success());
    let main_rs = dir.path().join("devices/src/main.rs");
    let template = std::fs::read_to_string(&main_rs).unwrap();
    assert!(
        template.contains("        console: Console,\n"),
        "{template}"
    );
    let build_with = |from: &str, to: &str| {
        std::fs::write(&main_rs, template.replace(from, to)).unwrap();
        let output = run_lamina(&["build", "-t", "unix", app]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (status, stderr) = build_with("console: Console,", "console: Consol,");
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("cannot find type `Consol`"), "{stderr}");
    assert!(stderr.contains("similar name"), "{stderr}");

    let (status, stderr) = build_with(
        "console: Console,",
        "console: Console,\n        my_disk: Block,",
    );
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("a device's name (its field's) goes in the image's manifest: 1-67 ASCII letters and digits"),
        "{stderr}"
    );

    let (status, stderr) = build_with("devices.console;", "devices.consol;");
    assert_eq!(status, Some(1), "status {status:?}: {stderr}");
    assert!(
        stderr.contains("no field `consol` on type `Devices<P>`"),
        "{stderr}"
    );

    // Declared but not attached: a clear error, status 2, main never runs.
    let (status, stderr) = build_with(
        "console: Console,",
        "console: Console,\n        storage: Block,",
    );
    assert_eq!(status, Some(0), "{stderr}");
    let output = run_lamina(&["run", "-t", "unix", app]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "device 'storage' (Block) declared in devices! is not available: \
             no block device named 'storage' is attached (attach one with --block:storage=...)"
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "main ran");
    // Attached, it runs; and describe draws it.
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let block = format!("--block:storage={}", disk.display());
    let output = run_lamina(&["run", "-t", "unix", app, "--", &block, "--times=1"]);
    assert_eq!(output.status.code(), Some(0));
    // A device attached under a name the application does not declare is
    // refused, as the Solo5 tenders refuse it.
    let misspelt = format!("--block:storge={}", disk.display());
    let output = run_lamina(&["run", "-t", "unix", app, "--", &block, &misspelt]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--block:storge: the application declares no block device 'storge' (it declares: storage)"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let described = run_lamina(&["describe", app]);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        text.contains("└─ Block \"storage\" → host file (--block:storage=FILE)"),
        "{text}"
    );
}

/// The list of devices that used to be in Cargo.toml is refused with a
/// message saying where the declaration lives now.
#[test]
fn the_old_cargo_metadata_device_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("old");
    let app = app.to_str().unwrap();
    assert!(run_lamina(&["new", "old", "--path", app]).status.success());
    let cargo_toml = dir.path().join("old/Cargo.toml");
    let mut text = std::fs::read_to_string(&cargo_toml).unwrap();
    text = text.replace(
        "[workspace]",
        "[package.metadata.lamina]\ndevices = [\"console\"]\n\n[workspace]",
    );
    std::fs::write(&cargo_toml, text).unwrap();
    let output = run_lamina(&["build", "-t", "unix", app]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("devices is no longer read"), "{stderr}");
    assert!(stderr.contains("lamina::devices!"), "{stderr}");
}

#[test]
fn missing_applications_are_reported() {
    let output = run_lamina(&["run", "-t", "unix", "no-such-app"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no application at 'no-such-app'"));
}
