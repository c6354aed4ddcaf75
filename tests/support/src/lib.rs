//! What every Lamina test crate shares about tests that cannot run here.
//!
//! Some tests need /dev/kvm, root, QEMU or a peer program (nc, hping3,
//! chromium...). Where one is missing, a test calls [`skip_or_fail`]
//! instead of passing silently:
//!
//! - under `CI=true`, or `LAMINA_REQUIRE_ALL=1` on a developer's machine,
//!   it panics with the reason, so that a machine missing something can
//!   never report green;
//! - otherwise it prints a `SKIPPED` line and, where `LAMINA_SKIP_LOG`
//!   names a file, appends the same line to it, so that `scripts/test.sh`
//!   can list every skip and its reason after cargo has hidden the output
//!   of passing tests.
//!
//! A failure points at the test's call, not at this crate.
//!
//! Only the Solo5 compatibility tests, whose images nothing committed can
//! build, may skip under CI: they call [`skip_allowed`], which records the
//! skip the same way but never fails.
//!
//! A test whose subject does not exist on this host (e.g. KVM-PVM's native
//! mode on a host with ordinary KVM) is not a skip: nothing is missing.
//! It calls [`not_applicable`], which records a `NOT-APPLICABLE` line and
//! never fails.

use std::io::Write;
use std::process::Command;

pub mod disk_lock;

/// The variable a developer sets (to `1`) to make every skip a failure, as
/// under CI.
pub const REQUIRE_ALL: &str = "LAMINA_REQUIRE_ALL";

/// The variable naming the file every skip is appended to, one line each.
pub const SKIP_LOG: &str = "LAMINA_SKIP_LOG";

/// Whether `value` of a flag variable means "on" (set, and not empty, `0`
/// or `false`).
fn flag_is_on(value: Option<std::ffi::OsString>) -> bool {
    value.is_some_and(|v| !matches!(v.to_str(), Some("" | "0" | "false" | "FALSE" | "no")))
}

/// Whether a test that cannot run must fail instead: under CI (`CI` set, as
/// every CI service does) or with `LAMINA_REQUIRE_ALL=1`.
pub fn every_test_must_run() -> bool {
    flag_is_on(std::env::var_os("CI")) || flag_is_on(std::env::var_os(REQUIRE_ALL))
}

/// The running test, as `BINARY::TEST`: the test binary without cargo's
/// hash suffix, and libtest's thread name (the test's path).
fn current_test() -> String {
    let binary = std::env::args()
        .next()
        .and_then(|path| {
            let name = std::path::Path::new(&path)
                .file_name()?
                .to_str()?
                .to_owned();
            Some(match name.rsplit_once('-') {
                Some((stem, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => stem.into(),
                _ => name,
            })
        })
        .unwrap_or_default();
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}

/// Prints the skip and appends it to `log` (`$LAMINA_SKIP_LOG`), if set.
fn record(what: &str, reason: &str, log: Option<std::ffi::OsString>) {
    record_line("SKIPPED", what, reason, log);
}

/// Prints `KIND test (what): reason` and appends it to `log`, if set.
fn record_line(kind: &str, what: &str, reason: &str, log: Option<std::ffi::OsString>) {
    let line = format!("{kind} {} ({what}): {reason}", current_test());
    eprintln!("{line}");
    let Some(log) = log else {
        return;
    };
    // One write of one short line to a file opened for appending: lines from
    // tests running in parallel do not interleave.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        panic!("cannot append to {SKIP_LOG}={}: {e}", log.to_string_lossy());
    }
}

/// `what` (a test, or a part of one) cannot run here, because of `reason`:
/// under CI or `LAMINA_REQUIRE_ALL=1` this panics with the reason; else it
/// prints and records the skip and the caller returns.
#[track_caller]
pub fn skip_or_fail(what: &str, reason: &str) {
    skip(
        what,
        reason,
        every_test_must_run(),
        std::env::var_os(SKIP_LOG),
    );
}

/// [`skip_or_fail`] with the environment passed in.
#[track_caller]
fn skip(what: &str, reason: &str, must_run: bool, log: Option<std::ffi::OsString>) {
    if must_run {
        panic!("{what} cannot run here: {reason} (CI or {REQUIRE_ALL} requires every test to run)");
    }
    record(what, reason, log);
}

/// Like [`skip_or_fail`], but never fails: only for the Solo5 compatibility
/// tests, which need images that nothing committed can build.
pub fn skip_allowed(what: &str, reason: &str) {
    record(what, reason, std::env::var_os(SKIP_LOG));
}

/// `what` does not apply to this host (its subject is not here, and
/// nothing is missing), because of `reason`: prints and records a
/// `NOT-APPLICABLE` line, distinct from a skip, and never fails, under CI
/// either; the caller returns.
pub fn not_applicable(what: &str, reason: &str) {
    record_line("NOT-APPLICABLE", what, reason, std::env::var_os(SKIP_LOG));
}

/// Whether /dev/kvm opens for reading and writing; if not, [`skip_or_fail`]
/// for `what`.
#[track_caller]
pub fn kvm_or_skip(what: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(what, &format!("/dev/kvm cannot be opened ({e})"));
            false
        }
    }
}

/// Whether this process runs as root; if not, [`skip_or_fail`] for `what`
/// (`why` says what root is needed for).
#[track_caller]
pub fn root_or_skip(what: &str, why: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        skip_or_fail(what, &format!("needs root {why}"));
    }
    root
}

/// Whether `tool` is on the PATH.
pub fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v '{tool}'")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether every one of `tools` is on the PATH; if one is not,
/// [`skip_or_fail`] for `what`, naming it.
#[track_caller]
pub fn tools_or_skip(what: &str, tools: &[&str]) -> bool {
    match tools.iter().find(|tool| !installed(tool)) {
        Some(tool) => {
            skip_or_fail(
                what,
                &format!("{tool} is not installed (scripts/setup.sh installs it)"),
            );
            false
        }
        None => true,
    }
}

/// The packages `package` (a workspace member) needs to build: its normal
/// and build dependencies, direct and indirect, by name, as `cargo tree`
/// lists them for the host (dev-dependencies left out). For tests that
/// guard the crate graph's boundaries.
///
/// # Panics
/// If `cargo tree` cannot run or fails (an unknown package, say).
pub fn cargo_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "--package", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo tree: {e}"));
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != package)
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_on_unless_empty_zero_or_false() {
        assert!(!flag_is_on(None));
        for off in ["", "0", "false", "no"] {
            assert!(!flag_is_on(Some(off.into())), "{off}");
        }
        for on in ["1", "true", "yes"] {
            assert!(flag_is_on(Some(on.into())), "{on}");
        }
    }

    #[test]
    fn the_current_test_is_named_by_binary_and_test() {
        let name = current_test();
        assert!(
            name.ends_with("::tests::the_current_test_is_named_by_binary_and_test"),
            "{name}"
        );
        assert!(name.starts_with("lamina_test_support::"), "{name}");
    }

    #[test]
    fn a_required_test_fails_with_the_reason() {
        let log = std::env::temp_dir().join(format!("lamina-skip-required-{}", std::process::id()));
        let panic = std::panic::catch_unwind(|| {
            skip(
                "nc part",
                "nc is not installed",
                true,
                Some(log.clone().into()),
            )
        })
        .expect_err("a skip under CI panics");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.contains("nc part cannot run here: nc is not installed"),
            "{message}"
        );
        assert!(!log.exists(), "a failure is not recorded as a skip");
    }

    #[test]
    fn a_skip_is_appended_to_the_log() {
        let log = std::env::temp_dir().join(format!("lamina-skip-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        skip("first", "no KVM", false, Some(log.clone().into()));
        skip("second", "no root", false, Some(log.clone().into()));
        let lines = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        let test = "::tests::a_skip_is_appended_to_the_log";
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("SKIPPED ") && lines[0].contains(test),
            "{lines:?}"
        );
        assert!(lines[0].ends_with("(first): no KVM"), "{lines:?}");
        assert!(lines[1].ends_with("(second): no root"), "{lines:?}");
    }

    #[test]
    fn not_applicable_is_recorded_apart_from_skips_and_never_fails() {
        let log =
            std::env::temp_dir().join(format!("lamina-not-applicable-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        // Whatever CI says: not_applicable does not consult it.
        record_line(
            "NOT-APPLICABLE",
            "pvm part",
            "not KVM-PVM",
            Some(log.clone().into()),
        );
        let lines = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert!(
            lines.starts_with("NOT-APPLICABLE ")
                && lines.trim_end().ends_with("(pvm part): not KVM-PVM"),
            "{lines:?}"
        );
        assert!(!lines.contains("SKIPPED"), "{lines:?}");
    }

    #[test]
    fn installed_finds_sh_and_not_a_made_up_name() {
        assert!(installed("sh"));
        assert!(!installed("lamina-no-such-tool-here"));
    }
}
