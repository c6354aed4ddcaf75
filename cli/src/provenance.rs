//! The provenance `lamina build` records in every unikernel image: what
//! built it, from which source, how (`lamina_core::provenance` describes
//! the notes; this module makes and reads their text).
//!
//! The text is `key=value` lines, the first `format=1`. Keys of format 1:
//!
//! | key | value |
//! |-----|-------|
//! | `lamina` | the version of the `lamina` tool that built it |
//! | `lamina_commit` | Lamina's own commit (`git rev-parse HEAD` of the tree the tool takes runtimes and link scripts from), if it is a git checkout |
//! | `rustc`, `cargo` | `rustc -V`, `cargo -V` |
//! | `app` | the application's package name |
//! | `package` | its directory relative to the repository (or workspace) root, `.` for the root |
//! | `target` | `spt`, `hvt` or `virtio` |
//! | `profile` | `release` or `debug` (`lamina build --release` or not) |
//! | `options` | the `lamina build` options that shape the image |
//! | `cargo_lock_sha256` | SHA-256 of the workspace's Cargo.lock, or `none` |
//! | `commit` | `git rev-parse HEAD` of the application's repository, or `none` |
//! | `dirty` | `true` if `git status --porcelain` listed anything |
//! | `rustflags` | the compiler flags of every crate of the guest (RUSTFLAGS; the same for every target) |
//! | `app_rustflags` | the flags of the application's crate alone: its target's cfg and the link, paths shown as the image sees them |
//! | `cargo_config` | the profile settings passed to cargo |
//! | `env.NAME` | each `LAMINA_*` variable set for the build (build scripts read them) |
//!
//! No absolute path of the build machine is recorded: two checkouts of one
//! commit record the same text.

use crate::guest::{self, Profile};
use crate::project::{lamina_root, Project};
use crate::Target;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable `lamina build` passes the text in; the
/// bare-metal runtime puts it in the image (targets/metal/src/provenance.rs).
pub const ENV: &str = "LAMINA_PROVENANCE";

/// Variables of the caller's environment that are not build inputs: what
/// `lamina` itself reads to find its tools or to run an image, and what the
/// test harness reads. Every other `LAMINA_*` variable is recorded (a build
/// script may read it). Recorded, a tool's path made two machines' images
/// of one commit differ, and a change of it rebuilt the image.
const NOT_INPUTS: [&str; 12] = [
    "LAMINA_HOME",
    ENV,
    // The tender or emulator `lamina run` and `lamina jitsu` start, and
    // the user-mode network's.
    crate::build::TENDER_VARS[0],
    crate::build::TENDER_VARS[1],
    crate::run::QEMU_VAR,
    crate::usernet::USERNET_VAR,
    // Where `lamina disk` finds GRUB's modules.
    crate::disk::GRUB_DIR_VAR,
    // What a unix image records its trace into, read when it runs.
    "LAMINA_TRACE",
    "LAMINA_TRACE_MIB",
    // The test harness's (tests/support).
    "LAMINA_SKIP_LOG",
    "LAMINA_REQUIRE_ALL",
    "LAMINA_JITSU_TAP_UNPRIVILEGED",
];

/// The provenance of one build, as ordered `key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The pairs, in the order they are written.
    pub fields: Vec<(String, String)>,
}

impl Provenance {
    /// The value of `key`, if recorded.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn push(&mut self, key: &str, value: impl Into<String>) {
        // A value is one line: a newline in it (from a tool's output)
        // would start a forged key.
        let value: String = value.into().replace(['\n', '\r'], " ");
        self.fields.push((key.to_owned(), value.trim().to_owned()));
    }

    /// The text of the note.
    pub fn to_text(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Reads the text of a note: `key=value` lines, the first `format=1`.
    pub fn parse(text: &str) -> Result<Provenance, String> {
        let mut provenance = Provenance::default();
        for (number, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not key=value: {line:?}", number + 1))?;
            provenance.fields.push((key.to_owned(), value.to_owned()));
        }
        match provenance.get("format") {
            Some("1") => Ok(provenance),
            Some(other) => Err(format!(
                "provenance format {other} is not one this lamina reads (format 1); use a newer lamina"
            )),
            None => Err("the provenance has no format line".into()),
        }
    }
}

/// What `cargo metadata` says about the workspace `project` is in.
pub struct Workspace {
    /// Its root directory.
    pub root: PathBuf,
    /// Its target directory.
    pub target_dir: PathBuf,
}

/// The workspace of `project` (its own directory and `target/` if cargo
/// cannot say).
pub fn workspace(project: &Project) -> Workspace {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(project.dir.join("Cargo.toml"));
    crate::supervise::dying_with_lamina(&mut command, libc::SIGTERM);
    let metadata = command
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let path = |key: &str| {
        metadata
            .as_ref()
            .and_then(|m| m.get(key)?.as_str().map(PathBuf::from))
    };
    Workspace {
        root: path("workspace_root").unwrap_or_else(|| project.dir.clone()),
        target_dir: path("target_directory").unwrap_or_else(|| project.dir.join("target")),
    }
}

/// The first line of `program ARGS`' output, if it ran.
fn first_line(program: impl AsRef<std::ffi::OsStr>, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.lines().next().map(|l| l.trim().to_owned())
}

/// The git checkout holding `dir`: its root and commit, if it is one.
pub fn git_checkout(dir: &Path) -> Option<(PathBuf, String)> {
    let root = first_line("git", &["rev-parse", "--show-toplevel"], dir)?;
    let commit = first_line("git", &["rev-parse", "HEAD"], dir)?;
    Some((PathBuf::from(root), commit))
}

/// Whether the checkout at `root` has changes or untracked files.
pub fn is_dirty(root: &Path) -> bool {
    Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(root)
        .output()
        .map_or(true, |o| !o.status.success() || !o.stdout.is_empty())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `path` relative to `base`, `.` for `base` itself (the whole path if it
/// is not below `base`).
fn relative(path: &Path, base: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(p) if p.as_os_str().is_empty() => ".".into(),
        Ok(p) => p.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// The `--remap-path-prefix` flags that keep the build machine's paths out
/// of the image (panic locations name source files): Cargo's home, Lamina,
/// the application's workspace and the target directory, each to a fixed
/// name. rustc applies the last matching one, so the longest come last.
pub fn remap_flags(workspace: &Workspace, target_dir: &Path) -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut maps: Vec<(PathBuf, &str)> = vec![
        (lamina_root(), "/lamina"),
        (workspace.root.clone(), "/app"),
        (target_dir.to_path_buf(), "/target"),
    ];
    if let Some(home) = cargo_home {
        maps.push((home, "/cargo"));
    }
    for (path, _) in &mut maps {
        if let Ok(real) = path.canonicalize() {
            *path = real;
        }
    }
    maps.sort_by_key(|(path, _)| path.as_os_str().len());
    maps.iter()
        .map(|(path, to)| format!("--remap-path-prefix={}={to}", path.display()))
        .collect()
}

/// Collects the provenance of building `project` for `target`, before the
/// build.
pub fn collect(project: &Project, target: Target, profile: Profile) -> Provenance {
    let workspace = workspace(project);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let unknown = || String::from("unknown");
    let mut p = Provenance::default();
    p.push("format", "1");
    p.push("lamina", env!("CARGO_PKG_VERSION"));
    if let Some((_, commit)) = git_checkout(&lamina_root()) {
        p.push("lamina_commit", commit);
    }
    p.push(
        "rustc",
        first_line(&rustc, &["-V"], &project.dir).unwrap_or_else(unknown),
    );
    p.push(
        "cargo",
        first_line(&cargo, &["-V"], &project.dir).unwrap_or_else(unknown),
    );
    p.push("app", &project.name);
    let checkout = git_checkout(&project.dir);
    let base = checkout
        .as_ref()
        .map_or(workspace.root.clone(), |(root, _)| root.clone());
    p.push("package", relative(&project.dir, &base));
    p.push("target", target.name());
    p.push("profile", if profile.release { "release" } else { "debug" });
    p.push("options", profile.options().join(" "));
    let lock = std::fs::read(workspace.root.join("Cargo.lock"))
        .map_or_else(|_| "none".into(), |bytes| hex(&Sha256::digest(&bytes)));
    p.push("cargo_lock_sha256", lock);
    match &checkout {
        Some((root, commit)) => {
            p.push("commit", commit.as_str());
            p.push("dirty", if is_dirty(root) { "true" } else { "false" });
        }
        None => {
            p.push("commit", "none");
            p.push("dirty", "true");
        }
    }
    let script = format!("/lamina/targets/{}/link.ld", guest::runtime_dir(target));
    p.push("rustflags", guest::flags().join(" "));
    p.push(
        "app_rustflags",
        guest::app_flags_with(target, &script).join(" "),
    );
    p.push("cargo_config", guest::profile_args(profile).join(" "));
    let mut inputs: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LAMINA_") && !NOT_INPUTS.contains(&k.as_str()))
        .collect();
    inputs.sort();
    for (key, value) in inputs {
        p.push(&format!("env.{key}"), value);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_values_stay_on_one_line() {
        let mut p = Provenance::default();
        p.push("format", "1");
        p.push("rustc", "rustc 1.95.0 (x)\ncommit=forged");
        p.push("options", "");
        let text = p.to_text();
        assert_eq!(
            text,
            "format=1\nrustc=rustc 1.95.0 (x) commit=forged\noptions=\n"
        );
        let back = Provenance::parse(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.get("commit"), None);
        assert_eq!(back.get("options"), Some(""));
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(Provenance::parse("").unwrap_err().contains("no format"));
        assert!(Provenance::parse("format=2\n")
            .unwrap_err()
            .contains("format 2"));
        assert!(Provenance::parse("format=1\nnot a pair\n")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/r/examples/hello"), Path::new("/r")),
            "examples/hello"
        );
        assert_eq!(relative(Path::new("/r"), Path::new("/r")), ".");
    }
}
