//! Helpers for tests that drive the real `lamina` binary.
#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `lamina` with a target directory of its own: the `cargo test` that runs
/// us holds the lock on the workspace's.
pub fn lamina() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lamina"));
    command.env("CARGO_TARGET_DIR", root().join("target").join("cli-tests"));
    command.current_dir(root());
    command
}

/// Runs `lamina ARGS` to completion.
pub fn run_lamina(args: &[&str]) -> Output {
    let output = lamina().args(args).output().expect("cannot start lamina");
    eprintln!(
        "--- lamina {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A free TCP port on loopback (the kernel's choice; released before use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server started with `lamina run`, in a process group of its own so that
/// it and the application stop together.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let child = lamina()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("cannot start lamina");
        Server { child }
    }

    /// Waits until something accepts connections on `port`.
    pub fn wait_for_port(&mut self, port: u16, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited before listening: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listened on port {port} within {limit:?}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Builds `app` for `target` with `lamina build --release` and returns the image.
pub fn image(target: &str, app: &str) -> PathBuf {
    let output = run_lamina(&["build", "--release", "-t", target, app]);
    assert!(
        output.status.success(),
        "lamina build -t {target} {app} failed"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("lamina: built"))
        .expect("lamina reports what it built");
    let path = line
        .rsplit(": ")
        .next()
        .and_then(|p| p.split(" (").next())
        .expect("a path");
    PathBuf::from(path)
}

/// The tenders and the benchmark peers, built once (optimised, as `lamina
/// run` builds them); returns their directory.
pub fn release_dir() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target").join("cli-tests");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-q",
                "-p",
                "lamina-spt",
                "-p",
                "lamina-hvt",
                "-p",
                "lamina-bench-peers",
            ])
            .env("CARGO_TARGET_DIR", &dir)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "the tenders or peers do not build");
        dir.join("release")
    })
}

/// The unikernel targets to test: spt always, hvt where /dev/kvm opens;
/// says plainly when hvt is skipped.
pub fn unikernel_targets(test: &str) -> Vec<&'static str> {
    let mut targets = vec!["spt"];
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => targets.push("hvt"),
        Err(e) => eprintln!("SKIPPED {test} on hvt: /dev/kvm is not usable here ({e})"),
    }
    targets
}
