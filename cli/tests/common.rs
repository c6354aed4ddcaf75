//! Helpers for tests that drive the real `lamina` binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// Each test binary includes this module and uses some of these.
#[allow(unused_imports)]
pub use lamina_test_support::{installed, kvm_or_skip, root_or_skip, skip_or_fail, tools_or_skip};

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
            self.assert_running("before listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listened on port {port} within {limit:?}");
    }

    /// Fails at once, naming `what`, if the server has exited (a wait for
    /// its answers would only time out).
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what}: the server exited: {status}");
        }
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
    image_with_env(target, app, &[])
}

/// [`image`] with `env` set for the build (what a build script reads, such
/// as the CA a test guest bakes in); `LAMINA_TLS_CA` is never inherited.
pub fn image_with_env(target: &str, app: &str, env: &[(&str, &OsStr)]) -> PathBuf {
    let args = ["build", "--release", "-t", target, app];
    let output = lamina()
        .args(args)
        .env_remove("LAMINA_TLS_CA")
        .envs(env.iter().copied())
        .output()
        .expect("cannot start lamina");
    eprintln!(
        "--- lamina {args:?} {env:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "lamina build -t {target} {app} failed"
    );
    built_image(&String::from_utf8_lossy(&output.stderr)).expect("lamina reports what it built")
}

/// The image a `lamina build` or `lamina run` says it built in `output`
/// (its last `lamina: built APP for TARGET in T s: PATH (N KiB)` line).
pub fn built_image(output: &str) -> Option<PathBuf> {
    output
        .lines()
        .rev()
        .find(|l| l.contains("lamina: built"))
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|p| p.split(" (").next())
        .map(PathBuf::from)
}

/// `cargo ARGS` in the workspace, into the target directory the tests
/// share (target/cli-tests), which it returns; panics naming `what` if
/// cargo fails.
pub fn cargo_into_test_dir(args: &[&str], what: &str) -> PathBuf {
    let dir = root().join("target").join("cli-tests");
    let status = Command::new(env!("CARGO"))
        .args(args)
        .env("CARGO_TARGET_DIR", &dir)
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "cargo {args:?} failed: no {what}");
    dir
}

/// The benchmark peers (lamina-bench-peers), built once, optimised;
/// returns their directory.
pub fn release_dir() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let args = ["build", "--release", "-q", "-p", "lamina-bench-peers"];
        cargo_into_test_dir(&args, "the benchmark peers").join("release")
    })
}

/// The tender for `target` (`spt`, `hvt`) as `lamina run` builds it:
/// `cargo tenders` (.cargo/config.toml), optimised and linked statically.
/// Both tenders are built once, beside the peers, and published.
pub fn tender(target: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let built = DIR.get_or_init(|| {
        let dir = cargo_into_test_dir(&["tenders", "-q"], "the tenders")
            .join("x86_64-unknown-linux-gnu")
            .join("release");
        for target in ["spt", "hvt"] {
            published(&dir.join(format!("lamina-{target}")));
        }
        dir
    });
    published_path(&built.join(format!("lamina-{target}")))
}

/// Where lamina's own builds publish the program cargo built at `built`
/// (cli/src/build.rs, `build_workspace_binary`): `published/NAME` beside it.
fn published_path(built: &Path) -> PathBuf {
    built
        .parent()
        .unwrap()
        .join("published")
        .join(built.file_name().unwrap())
}

/// How lamina publishes what cargo built (cli/src/replace.rs): the tests
/// publish the programs they start the same way.
#[path = "../src/replace.rs"]
mod replace;

/// The copy of the program cargo built at `built` that tests start, as
/// `lamina run` starts its own (the same file): cargo removes its file
/// and links it again at every build, even one with nothing to do, and
/// another test's `lamina run` builds the tenders and lamina-usernet in
/// this target directory at any moment. The copy is only ever replaced by
/// renaming a whole file over it, when cargo's is newer (lamina's
/// `publish::publish`, without its stripping, which a test cannot call).
pub fn published(built: &Path) -> PathBuf {
    let to = published_path(built);
    // cargo's file may be missing for an instant while another build
    // links it again.
    fn retried<T>(what: impl Fn() -> std::io::Result<T>) -> T {
        for _ in 0..50 {
            if let Ok(value) = what() {
                return value;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        what().expect("the program was built")
    }
    let linked = retried(|| std::fs::metadata(built)?.modified());
    if replace::is_current(&to, linked) {
        return to;
    }
    let bytes = retried(|| std::fs::read(built));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    replace::replace_whole(
        &to,
        "test",
        linked,
        |part| {
            std::fs::write(part, &bytes)?;
            std::fs::set_permissions(part, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        },
        |e| e,
    )
    .unwrap();
    to
}

/// lamina-usernet, built optimised beside the tenders.
pub fn usernet_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let args = ["build", "--release", "-q", "-p", "lamina-usernet"];
            published(
                &cargo_into_test_dir(&args, "lamina-usernet")
                    .join("release")
                    .join("lamina-usernet"),
            )
        })
        .clone()
}

/// The unikernel targets to test: spt always, hvt where /dev/kvm opens;
/// where it does not, hvt's part of `test` is skipped or, under CI, fails
/// (see [`skip_or_fail`]).
pub fn unikernel_targets(test: &str) -> Vec<&'static str> {
    let mut targets = vec!["spt"];
    if kvm_or_skip(&format!("{test} on hvt")) {
        targets.push("hvt");
    }
    targets
}

/// Root and `tools`, as tests that make network namespaces and taps need;
/// if one is missing, `test` is skipped or, under CI, fails.
pub fn can_use_namespaces(test: &str, tools: &[&str]) -> bool {
    root_or_skip(test, "to create network namespaces and taps") && tools_or_skip(test, tools)
}

/// A network namespace of a name of its own (`PREFIX-PID-N`) with tap0 at
/// 10.SUBNET.0.1/24, SUBNET counting up from the one `new` is given, and at
/// most one guest started in it (in a process group of its own). On drop,
/// on success and on failure, the guest's process group is killed and the
/// namespace deleted.
pub struct Namespace {
    pub name: String,
    pub subnet: u32,
    guest: Option<Child>,
}

impl Namespace {
    pub fn new(prefix: &str, first_subnet: u32) -> Namespace {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Namespace {
            name: format!("{prefix}-{}-{n}", std::process::id()),
            subnet: first_subnet + n,
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

    /// The guest's address on the tap's subnet (the host has .1).
    pub fn guest_ip(&self) -> String {
        format!("10.{}.0.2", self.subnet)
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `args` inside the namespace to completion.
    pub fn exec(&self, args: &[&str]) -> Output {
        let output = self.command(args[0]).args(&args[1..]).output().unwrap();
        eprintln!(
            "--- in {}: {args:?}: {:?}\n{}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `script` with `sh` inside the namespace to completion.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Starts `guest` (from [`Namespace::command`]) in a process group of
    /// its own, its output to `log`.
    pub fn start_guest(&mut self, mut guest: Command, log: &Path) {
        assert!(self.guest.is_none(), "one guest a namespace");
        let log = std::fs::File::create(log).unwrap();
        let child = guest
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        self.guest = Some(child);
    }

    /// The guest's process (also its process group).
    pub fn guest_pid(&self) -> u32 {
        self.guest.as_ref().expect("a guest").id()
    }

    pub fn guest_alive(&mut self) -> bool {
        matches!(self.guest.as_mut().map(|g| g.try_wait()), Some(Ok(None)))
    }

    /// Runs `script` inside the namespace until its output contains
    /// `expected`, for at most `limit`, and returns that output; panics
    /// sooner if the guest exits.
    pub fn wait_for(&mut self, script: &str, expected: &str, limit: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < limit {
            let out = self.command("sh").args(["-c", script]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(expected) {
                eprintln!("--- {script}: answered after {:?}", start.elapsed());
                return text;
            }
            if let Some(Ok(Some(status))) = self.guest.as_mut().map(|g| g.try_wait()) {
                panic!("the unikernel exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no '{expected}' from `{script}` within {limit:?}");
    }

    /// Waits until the guest echoes over TCP on port 7.
    pub fn wait_for_echo(&mut self, limit: Duration) {
        let probe = format!("echo probe | nc -N -w 1 {} 7", self.guest_ip());
        self.wait_for(&probe, "probe", limit);
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

/// User plus system CPU time of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// The CPU time, in seconds, process `pid` uses over the next `period`.
pub fn cpu_seconds_over(pid: u32, period: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(period);
    cpu_seconds(pid) - before
}

/// The frame-drop count in a unikernel's console: the last "net: dropped
/// N frames ..." report of the stack.
pub fn dropped_frames(console: &str) -> Option<u64> {
    console
        .lines()
        .filter_map(|l| l.split("net: dropped ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .next_back()
}

/// The number right before `label` in `text` (as in "0.95 s of its own
/// work" or "(12 polls").
pub fn number_before(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in: {text}"));
    text[..at]
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before '{label}' in: {text}"))
}
