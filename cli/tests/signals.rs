//! `lamina run` stops when told to: SIGTERM, SIGINT or SIGHUP sent to the
//! `lamina` process alone reaches the application (the unix process, the
//! tender or QEMU), `lamina` exits with its status within the grace period,
//! and no process of the application remains; an application that ignores
//! the signal is killed after the grace period; and if `lamina` itself is
//! killed, its application dies with it.
//!
//! Each run is hello with a thousand one-second greetings, stopped after
//! its first. hvt needs /dev/kvm and virtio needs QEMU: without them those
//! parts are skipped, or fail under CI (see `skip_or_fail`).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `lamina run`'s default grace period (`--stop-timeout`).
const GRACE: Duration = Duration::from_secs(5);

/// The longest a build and boot may take before the first greeting.
const START_LIMIT: Duration = Duration::from_secs(900);

/// A field of /proc/PID/stat after the command name (0 = state), or None
/// if the process does not exist.
fn stat_field(pid: u32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat.rsplit_once(") ")?.1;
    fields.split(' ').nth(index).map(str::to_string)
}

/// Whether `pid` runs (exists and is not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z")
}

/// The live processes whose process group is `group`.
fn processes_in_group(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 2).is_some_and(|g| g == group.to_string()))
        .filter(|&pid| running(pid))
        .collect()
}

/// The children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 1).is_some_and(|p| p == parent.to_string()))
        .collect()
}

/// `lamina run` of an application that is running: the `lamina` process,
/// and the application's process it started.
struct Running {
    lamina: Child,
    application: u32,
    /// lamina's stdout, line by line, after `ready`.
    output: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `lamina ARGS` (in a process group of its own, as a shell
    /// would) with `env`, and waits for `ready` on its stdout.
    fn start(args: &[&str], env: &[(&str, &Path)], ready: &str) -> Running {
        let mut command = lamina();
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut lamina = command.spawn().expect("cannot start lamina");
        let (lines, seen) = std::sync::mpsc::channel();
        let stdout = lamina.stdout.take().unwrap();
        // Reads the output to its end, so that lamina can write it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("--- {line}");
                let _ = lines.send(line);
            }
        });
        let start = Instant::now();
        loop {
            let left = START_LIMIT.saturating_sub(start.elapsed());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains(ready) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = lamina.kill();
                    panic!("no '{ready}' from lamina {args:?}: {e}");
                }
            }
        }
        let application = *children(lamina.id())
            .first()
            .expect("lamina runs the application as its child");
        assert_eq!(
            stat_field(application, 2),
            Some(application.to_string()),
            "the application runs in a process group of its own"
        );
        Running {
            lamina,
            application,
            output: seen,
        }
    }

    /// Sends `signal` to the `lamina` process alone and waits for it to
    /// exit; returns its status and how long that took.
    fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> (ExitStatus, Duration) {
        // Timed from before `kill` starts: lamina has the signal (and
        // starts its grace period) before `kill` has exited, and a clock
        // started after that measured a 1 s grace as 997 ms (a CI run).
        let start = Instant::now();
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &self.lamina.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.wait_from(start, &format!("SIG{signal}"), limit)
    }

    /// Waits until `limit` after `start` for lamina to exit (after
    /// `what`); returns its status and how long after `start` that was.
    fn wait_from(&mut self, start: Instant, what: &str, limit: Duration) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.lamina.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "lamina still runs {limit:?} after {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines lamina has printed since `ready`, once it has exited.
    fn lines_after_ready(&self) -> Vec<String> {
        self.output.iter().collect()
    }

    /// Asserts that nothing of the application remains.
    fn assert_nothing_left(&self, what: &str) {
        // A process killed as lamina ends may take a moment to go.
        let start = Instant::now();
        while running(self.application) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !running(self.application),
            "{what}: the application (pid {}) still runs",
            self.application
        );
        let left = processes_in_group(self.application);
        assert!(left.is_empty(), "{what}: left in its group: {left:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for group in [self.lamina.id(), self.application] {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.lamina.wait();
    }
}

/// `lamina run -t TARGET hello` greeting a thousand times, once a second.
fn run_hello(target: &str, extra: &[&str], env: &[(&str, &Path)]) -> Running {
    let mut args = vec!["run", "-t", target];
    args.extend_from_slice(extra);
    args.extend(["hello", "--", "--times=1000"]);
    Running::start(&args, env, "(1/1000)")
}

/// The targets to run here: unix and spt always, hvt with /dev/kvm, virtio
/// with QEMU.
fn targets(test: &str) -> Vec<&'static str> {
    let mut targets = vec!["unix"];
    targets.extend(unikernel_targets(test));
    if tools_or_skip(&format!("{test} on virtio"), &["qemu-system-x86_64"]) {
        targets.push("virtio");
    }
    targets
}

/// The status `lamina run` exits with when its application stops on
/// `signal` (its number), the same on every target: 128 + N, the
/// process's death by the signal on unix and spt, QEMU's clean stop on
/// it, and lamina-hvt's exit after stopping the guest on it.
fn stopped_by(signal: i32) -> i32 {
    128 + signal
}

#[test]
fn sigterm_stops_lamina_run_and_its_application_on_every_target() {
    for target in targets("SIGTERM") {
        let mut run = run_hello(target, &[], &[]);
        let (status, took) = run.signal_and_wait("TERM", GRACE + Duration::from_secs(5));
        eprintln!("{target}: SIGTERM to lamina: {status} after {took:?}");
        assert!(took < GRACE, "{target}: took {took:?}, beyond the grace");
        assert_eq!(status.code(), Some(stopped_by(15)), "{target}: {status}");
        run.assert_nothing_left(target);
    }
}

/// An idle guest (echo with a network device and no client) spends its
/// time blocked in a POLL: a SIGTERM ends it at once, with the same
/// status as a busy guest's, not at the guest's deadline nor by the
/// SIGKILL after the grace period. Several times, for a signal that lands
/// between the tender's check and its next wait.
#[test]
fn sigterm_stops_an_idle_guest_at_once() {
    for target in unikernel_targets("SIGTERM to an idle guest") {
        for attempt in 0..5 {
            let forward = format!("{}:7", free_port());
            let mut run = Running::start(
                &["run", "-t", target, "echo", "--port", &forward],
                &[],
                "echo: listening",
            );
            std::thread::sleep(Duration::from_millis(100 * attempt));
            let (status, took) = run.signal_and_wait("TERM", GRACE + Duration::from_secs(5));
            eprintln!("idle {target}: SIGTERM to lamina: {status} after {took:?}");
            assert!(took < Duration::from_secs(1), "{target}: took {took:?}");
            assert_eq!(status.code(), Some(stopped_by(15)), "{target}: {status}");
            run.assert_nothing_left(&format!("idle {target}"));
        }
    }
}

#[test]
fn sighup_and_sigint_stop_lamina_run_too() {
    let mut targets = vec!["spt"];
    if kvm_or_skip("SIGHUP and SIGINT on hvt") {
        targets.push("hvt");
    }
    for target in targets {
        for (signal, number) in [("HUP", 1), ("INT", 2)] {
            let mut run = run_hello(target, &[], &[]);
            let (status, took) = run.signal_and_wait(signal, GRACE + Duration::from_secs(5));
            eprintln!("{target}: SIG{signal} to lamina: {status} after {took:?}");
            assert!(took < GRACE, "{target}: SIG{signal} took {took:?}");
            assert_eq!(
                status.code(),
                Some(stopped_by(number)),
                "{target}: SIG{signal}: {status}"
            );
            run.assert_nothing_left(&format!("{target} SIG{signal}"));
        }
    }
}

/// An executable shell script `script` in `dir`, as a stand-in tender.
fn tender_script(dir: &Path, script: &str) -> std::path::PathBuf {
    let path = dir.join("tender.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
    let made_executable = Command::new("chmod")
        .args(["+x", path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(made_executable.success());
    path
}

/// A "tender" that ignores every signal lamina forwards and leaves a
/// process of its own behind: it is killed, with what it started, once
/// the grace period (here 1 s) is over.
/// The same holds for a QEMU (`LAMINA_QEMU`) that ignores them: its
/// death by SIGKILL is 137, not read as a guest's debug-exit status.
#[test]
fn an_application_that_ignores_sigterm_is_killed_after_the_grace_period() {
    for (target, variable) in [("spt", "LAMINA_SPT"), ("virtio", "LAMINA_QEMU")] {
        let dir = tempfile::tempdir().unwrap();
        let stubborn = tender_script(
            dir.path(),
            "trap '' TERM INT HUP\nsleep 1000 &\necho 'stubborn (1/1000)'\n\
             while :; do sleep 1; done\n",
        );
        let grace = Duration::from_secs(1);
        let mut run = run_hello(target, &["--stop-timeout", "1"], &[(variable, &stubborn)]);
        let left_behind = children(run.application);
        assert!(
            !left_behind.is_empty(),
            "the stubborn {target} started sleep"
        );
        let (status, took) = run.signal_and_wait("TERM", grace + Duration::from_secs(5));
        eprintln!("stubborn {target}: SIGTERM to lamina: {status} after {took:?}");
        assert!(
            took >= grace,
            "{target}: killed after {took:?}, before the grace"
        );
        assert!(
            took < grace + Duration::from_secs(2),
            "{target}: took {took:?}"
        );
        assert_eq!(status.code(), Some(128 + 9), "{target}: killed: {status}");
        run.assert_nothing_left(&format!("the stubborn {target}"));
        for pid in left_behind {
            assert!(
                !running(pid),
                "{target}: what it started ({pid}) still runs"
            );
        }
    }
}

/// A QEMU that dies by the signal lamina forwards (rather than exiting 0
/// as QEMU does) makes lamina exit 128 + N too, not a guest status decoded
/// from 128 + N.
#[test]
fn a_qemu_killed_by_the_signal_gives_its_number() {
    let dir = tempfile::tempdir().unwrap();
    // `exec sleep`: the process lamina signals is the one that dies by it.
    let mortal = tender_script(dir.path(), "echo 'mortal (1/1000)'\nexec sleep 1000\n");
    let mut run = run_hello("virtio", &[], &[("LAMINA_QEMU", &mortal)]);
    let (status, took) = run.signal_and_wait("TERM", GRACE + Duration::from_secs(5));
    eprintln!("dying QEMU: SIGTERM to lamina: {status} after {took:?}");
    assert!(took < GRACE, "took {took:?}");
    assert_eq!(status.code(), Some(128 + 15), "{status}");
    run.assert_nothing_left("the dying QEMU");
}

/// A Ctrl-C on a terminal signals its foreground process group, lamina's:
/// the application, in a group of its own, gets that SIGINT once, from
/// lamina, not a second time from the terminal. (A "tender" that counts
/// the SIGINTs it gets and keeps running; killed after the grace period.)
#[test]
fn a_ctrl_c_reaches_the_application_once() {
    let dir = tempfile::tempdir().unwrap();
    let counting = tender_script(
        dir.path(),
        "trap 'echo got SIGINT' INT\necho 'counting (1/1000)'\n\
         while :; do sleep 0.1; done\n",
    );
    let mut run = run_hello(
        "spt",
        &["--stop-timeout", "1"],
        &[("LAMINA_SPT", &counting)],
    );
    // As the terminal does: the whole foreground group (lamina's).
    let group = format!("-{}", run.lamina.id());
    let sent = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(sent.success());
    let (status, _) = run.wait_from(Instant::now(), "a Ctrl-C", Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "killed after the grace: {status}"
    );
    let lines = run.lines_after_ready();
    let got = lines.iter().filter(|l| l.as_str() == "got SIGINT").count();
    assert_eq!(got, 1, "SIGINTs the application got: {lines:?}");
    run.assert_nothing_left("the counting tender");
}

/// lamina killed outright (SIGKILL, nothing forwarded): the kernel kills
/// its application too (PR_SET_PDEATHSIG).
#[test]
fn killing_lamina_kills_its_application() {
    let mut targets = vec!["spt"];
    if tools_or_skip("killing lamina under QEMU", &["qemu-system-x86_64"]) {
        targets.push("virtio");
    }
    for target in targets {
        let mut run = run_hello(target, &[], &[]);
        let (status, _) = run.signal_and_wait("KILL", Duration::from_secs(5));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        run.assert_nothing_left(&format!("{target}, lamina killed"));
    }
}

/// lamina killed while it builds (`kill PID`, the build not signalled):
/// its cargo dies with it, where it built on alone. The "cargo" here is a
/// script (`CARGO`) that waits, so nothing is built.
#[test]
fn killing_lamina_during_its_build_ends_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("cargo.pid");
    let cargo = tender_script(
        dir.path(),
        &format!("echo $$ > {}\nexec sleep 60\n", pid_file.display()),
    );
    let mut lamina = lamina()
        .args(["build", "-t", "unix", "hello"])
        .env("CARGO", &cargo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let cargo_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no cargo started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(running(cargo_pid));
    let killed = Command::new("kill")
        .args(["-TERM", &lamina.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    lamina.wait().unwrap();
    assert!(gone(cargo_pid), "cargo {cargo_pid} outlived lamina");
}

#[test]
fn a_bad_stop_timeout_is_refused() {
    for bad in ["abc", "-1", "1e9"] {
        let output = run_lamina(&[
            "run",
            "-t",
            "unix",
            &format!("--stop-timeout={bad}"),
            "hello",
        ]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("expected seconds from 0 to 86400"),
            "{bad}: {stderr}"
        );
    }
}

/// The `lamina-usernet` child of `lamina`, if there is one.
fn usernet_child(lamina: u32) -> Option<u32> {
    children(lamina).into_iter().find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|name| name.trim() == "lamina-usernet")
    })
}

/// Waits up to two seconds for `pid` to be gone.
fn gone(pid: u32) -> bool {
    let start = Instant::now();
    while running(pid) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    !running(pid)
}

#[test]
fn the_user_mode_network_does_not_outlive_lamina_run() {
    for target in unikernel_targets("the user-mode network process") {
        for signal in ["TERM", "KILL"] {
            let forward = format!("{}:7", free_port());
            let mut run = Running::start(
                &["run", "-t", target, "echo", "--port", &forward],
                &[],
                "listening on",
            );
            let usernet = usernet_child(run.lamina.id())
                .unwrap_or_else(|| panic!("{target}: no lamina-usernet process beside the tender"));
            assert!(running(usernet));
            let (status, took) = run.signal_and_wait(signal, GRACE + Duration::from_secs(5));
            eprintln!("{target}: SIG{signal} to lamina: {status} after {took:?}");
            assert!(
                gone(usernet),
                "{target}: lamina-usernet (pid {usernet}) outlives lamina after SIG{signal}"
            );
            run.assert_nothing_left(&format!("{target}, SIG{signal}"));
        }
    }
}
