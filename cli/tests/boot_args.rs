//! Boot arguments that no TCP/IP stack can use (issue 18), given to the
//! echo unikernel through `lamina run` and the real tenders: each is
//! refused when the command line is parsed, before the stack starts, with
//! a message that names the argument, the value and what is allowed, and
//! status 2: every case on spt, three of them on hvt (where KVM works) and
//! virtio (where QEMU is installed). On unix the stack is the host's: the
//! same arguments are unknown there, also status 2.
//!
//! The guests get a user-mode network (`--port`), so that no root or tap
//! is needed: the image declares a network device, so the stack's
//! arguments are parsed, and the tender insists on the device.

mod common;

use common::*;
use std::io::{BufRead, Read};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const HUGE: &str = "18446744073709551615";

/// Each bad command line and the start of the guest's message for it.
fn cases() -> Vec<(Vec<String>, &'static str)> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            words(&["--ipv4=239.1.0.2/24"]),
            "unikernel: invalid value '239.1.0.2/24' for '--ipv4': 239.1.0.2 is not a unicast \
             address (0.0.0.0, multicast and 255.255.255.255 are not)",
        ),
        (
            words(&["--ipv4=255.255.255.255/0"]),
            "unikernel: invalid value '255.255.255.255/0' for '--ipv4': 255.255.255.255 is not a \
             unicast address",
        ),
        (
            words(&["--ipv4=10.1.0.2/24", "--ipv4-gateway=224.0.0.1"]),
            "unikernel: invalid value '224.0.0.1' for '--ipv4-gateway': 224.0.0.1 is not a \
             unicast address",
        ),
        (
            // `lamina run` adds the user-mode network's address, not its
            // gateway: this one reaches the guest.
            words(&["--ipv4-gateway=0.0.0.0"]),
            "unikernel: invalid value '0.0.0.0' for '--ipv4-gateway': 0.0.0.0 is not a unicast \
             address",
        ),
        (
            words(&[&format!("--tcp-rx-buffer={HUGE}")]),
            "unikernel: invalid value '18446744073709551615' for '--tcp-rx-buffer': expected 1024 \
             to 1073741824 bytes (1 GiB)",
        ),
        (
            words(&[&format!("--tcp-backlog={HUGE}")]),
            "unikernel: invalid value '18446744073709551615' for '--tcp-backlog': expected 1 to \
             65535 connections",
        ),
        (
            words(&[&format!("--tcp-ack-delay-ms={HUGE}")]),
            "unikernel: invalid value '18446744073709551615' for '--tcp-ack-delay-ms': expected 0 \
             to 500 milliseconds",
        ),
        (
            words(&[
                &format!("--tcp-memory={HUGE}"),
                "--tcp-rx-buffer=1099511627776",
            ]),
            "unikernel: invalid value '1099511627776' for '--tcp-rx-buffer': expected 1024 to \
             1073741824 bytes (1 GiB)",
        ),
        (
            // The tender joins the words into one command line, which the
            // guest cannot split: said as such, not as an argument named
            // "a command line with an unclosed quote".
            words(&["--ipv4=\"10.1.0.2/24"]),
            "unikernel: the command line has a quote that is not closed",
        ),
        (
            // Within the bounds and a quarter of --tcp-memory, but more
            // than the heap of a 16 MiB guest can give a connection.
            words(&["--tcp-rx-buffer=4194304"]),
            "unikernel: invalid value '4194304' for '--tcp-rx-buffer': with --tcp-tx-buffer=65536 \
             a connection's buffers take 4259840 bytes, more than",
        ),
    ]
}

/// Runs `lamina ARGS` and gives the unikernel a minute from its start
/// (`lamina: running ...`): an argument that is not refused would leave
/// echo serving, and the test must fail, not hang. The minute does not
/// count `lamina`'s builds before it, which can wait on the other tests'
/// builds for the shared target directory's lock. On time-out `lamina`
/// gets a SIGTERM, which it forwards to the unikernel, and the status is
/// none.
fn run_for_a_minute(args: &[&str]) -> Output {
    let mut child = lamina()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start lamina");
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let (started_tx, started) = std::sync::mpsc::channel();
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut lines = std::io::BufReader::new(stderr);
        loop {
            let before = text.len();
            match lines.read_until(b'\n', &mut text) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if text[before..].starts_with(b"lamina: running ") {
                        let _ = started_tx.send(Instant::now());
                    }
                }
            }
        }
        text
    });
    // Builds first, however long the lock takes (an hour at most).
    let build_limit = Instant::now() + Duration::from_secs(3600);
    let mut deadline = None;
    let mut status = None;
    loop {
        if let Some(done) = child.try_wait().unwrap() {
            status = Some(done);
            break;
        }
        if deadline.is_none() {
            deadline = started
                .try_recv()
                .ok()
                .map(|at| at + Duration::from_secs(60));
        }
        if Instant::now() > deadline.unwrap_or(build_limit) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.unwrap_or_else(|| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        // A signal's end has no code: the status check fails.
        std::os::unix::process::ExitStatusExt::from_raw(15)
    });
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    eprintln!(
        "--- lamina {args:?}: {:?}\n{}",
        output.status,
        text(&output)
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

/// The cases run on `target`: all on spt; on hvt and virtio, whose guests
/// parse with the same code, one address, one size and the heap check
/// (whose bound is the target's own), which is what differs there: how a
/// refusal reaches the console and the exit status.
fn cases_on(target: &str) -> Vec<(Vec<String>, &'static str)> {
    let all = cases();
    if target == "spt" {
        return all;
    }
    let last = all.len() - 1;
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| [0, 4, last].contains(i))
        .map(|(_, case)| case)
        .collect()
}

/// Runs echo on `target` (with `run_options` before the application) once
/// per case and checks status 2 and the message.
fn refused_on(target: &str, run_options: &[&str]) {
    image(target, "echo");
    for (words, message) in cases_on(target) {
        let mut args = vec!["run", "--release", "-t", target];
        args.extend(run_options);
        args.extend(["echo", "--"]);
        args.extend(words.iter().map(String::as_str));
        let output = run_for_a_minute(&args);
        let text = text(&output);
        assert_eq!(output.status.code(), Some(2), "{target} {words:?}: {text}");
        assert!(
            text.contains(message),
            "{target} {words:?}: expected '{message}' in:\n{text}"
        );
        assert!(!text.contains("panic"), "{target} {words:?}: {text}");
        assert!(
            !text.contains("echo: listening"),
            "{target} {words:?}: the application ran: {text}"
        );
    }
}

#[test]
fn bad_stack_arguments_stop_spt_and_hvt_with_status_2() {
    let port = free_port().to_string() + ":7";
    for target in unikernel_targets("bad stack arguments") {
        refused_on(target, &["--mem=16", "--port", &port]);
    }
}

#[test]
fn bad_stack_arguments_stop_virtio_with_status_2() {
    if !tools_or_skip("bad stack arguments on virtio", &["qemu-system-x86_64"]) {
        return;
    }
    let port = free_port().to_string() + ":7";
    refused_on("virtio", &["--mem=16", "--port", &port]);
}

/// On unix the application uses the host's sockets: the stack's arguments
/// are unknown, which is the same usage error.
#[test]
fn stack_arguments_are_unknown_on_unix_with_status_2() {
    image("unix", "echo");
    for (words, _) in cases() {
        let mut args = vec!["run", "--release", "-t", "unix", "echo", "--"];
        args.extend(words.iter().map(String::as_str));
        let output = run_for_a_minute(&args);
        let text = text(&output);
        assert_eq!(output.status.code(), Some(2), "unix {words:?}: {text}");
        let name = words[0].split('=').next().unwrap();
        assert!(
            text.contains(&format!("unknown argument '{name}' (see --help)")),
            "unix {words:?}: {text}"
        );
    }
}

/// `lamina run`'s own options are checked before anything starts: one host
/// port forwarded twice (for the same protocol) is refused with both
/// forwards named, status 2.
#[test]
fn a_host_port_forwarded_twice_is_refused() {
    image("spt", "echo");
    let port = free_port();
    let (first, second) = (format!("{port}:7"), format!("{port}:8"));
    let args = [
        "run",
        "--release",
        "-t",
        "spt",
        "--port",
        &first,
        "--port",
        &second,
        "echo",
    ];
    let output = run_for_a_minute(&args);
    let text = text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "--port {second}/tcp and --port {first}/tcp both forward host port {port}"
        )),
        "{text}"
    );
}
