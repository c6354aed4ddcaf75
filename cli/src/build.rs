//! `lamina build`: drive cargo for a target.

use crate::guest::{self, Debuginfo, Profile};
use crate::project::Project;
use crate::provenance;
use crate::{CliError, Target};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A built application.
#[derive(Debug)]
pub struct Built {
    /// The program (unix) or image (unikernel targets).
    pub artifact: PathBuf,
    /// The unstripped copy of a release unikernel image (IMAGE.debug).
    pub debug: Option<PathBuf>,
}

/// Builds `project` for `target` with `profile`, showing cargo's progress.
/// (A unix build takes cargo's own profiles: without `--release` it has
/// full debug information already.)
pub fn build(project: &Project, target: Target, profile: Profile) -> Result<Built, CliError> {
    let started = Instant::now();
    let release = profile.release;
    let built = match target {
        Target::Unix => {
            if release && profile.debuginfo == Debuginfo::Full {
                return Err(CliError::Project(format!(
                    "{} is for unikernel targets: a unix build without --release has full debug information",
                    guest::FULL_DEBUGINFO
                )));
            }
            let args = if release {
                vec!["--release".to_owned()]
            } else {
                Vec::new()
            };
            cargo_build(
                &project.dir.join("Cargo.toml"),
                &project.name,
                &args,
                &[],
                &[],
            )?
        }
        Target::Spt | Target::Hvt | Target::Virtio => {
            let build_dir = guest::build_dir(project, profile);
            let mut args = vec![
                "--target".to_owned(),
                guest::GUEST_TRIPLE.to_owned(),
                "--target-dir".to_owned(),
                build_dir.display().to_string(),
                "--features".to_owned(),
                guest::target_feature(target),
            ];
            args.extend(guest::profile_args(profile));
            // Reproducible images: no path of this machine in them (the
            // flags reach rustc only; build IDs are off in guest::app_flags).
            let workspace = provenance::workspace(project);
            let mut flags = guest::flags();
            flags.extend(provenance::remap_flags(&workspace, &build_dir));
            let env = [
                ("RUSTFLAGS", flags.join(" ")),
                (
                    provenance::ENV,
                    provenance::collect(project, target, profile).to_text(),
                ),
            ];
            // Every target's build links the application at one path in
            // `build_dir`: the lock keeps another lamina's build from
            // linking it again before this one has published it.
            let _lock = lock_build_dir(&build_dir)?;
            let linked = cargo_build(
                &project.dir.join("Cargo.toml"),
                &project.name,
                &args,
                &env,
                &guest::app_flags(target),
            )?;
            let image =
                guest::image_in(&guest::target_dir(project, target, profile), &project.name);
            let debug = crate::publish::publish(&linked.artifact, &image, release)?;
            Built {
                artifact: image,
                debug,
            }
        }
    };
    let size = std::fs::metadata(&built.artifact)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "lamina: built {} for {} in {:.1} s: {} ({} KiB)",
        project.name,
        target.name(),
        started.elapsed().as_secs_f64(),
        built.artifact.display(),
        size / 1024
    );
    Ok(built)
}

/// What `cargo tenders` (.cargo/config.toml) adds to a release build: the
/// tenders are linked wholly statically, glibc included, so that no dynamic
/// loader runs before the guest boots (about 0.2 ms of every start) and a
/// tender runs where no shared library is. With an explicit `--target`
/// the flag reaches the tender alone, not build scripts or proc macros.
const STATIC_TENDER: [&str; 4] = [
    "--target",
    "x86_64-unknown-linux-gnu",
    "--config",
    "target.x86_64-unknown-linux-gnu.rustflags = ['-Ctarget-feature=+crt-static']",
];

/// The variables that name a tender to start instead of building one.
pub const TENDER_VARS: [&str; 2] = ["LAMINA_SPT", "LAMINA_HVT"];

/// The tender for `target` (`lamina-spt`, `lamina-hvt`): the program
/// `LAMINA_SPT` or `LAMINA_HVT` names, else built from this copy of Lamina,
/// optimised and static.
pub fn tender(target: Target) -> Result<PathBuf, CliError> {
    let var = match target {
        Target::Spt => TENDER_VARS[0],
        Target::Hvt => TENDER_VARS[1],
        Target::Unix | Target::Virtio => {
            return Err(CliError::Project(format!(
                "{} has no tender",
                target.name()
            )))
        }
    };
    match std::env::var_os(var) {
        Some(path) => Ok(PathBuf::from(path)),
        None => build_workspace_binary(&format!("lamina-{}", target.name()), &STATIC_TENDER),
    }
}

/// Builds `name`, a host program of the Lamina workspace whose package
/// and binary share the name (lamina-usernet), in release mode.
pub fn build_host_binary(name: &str) -> Result<PathBuf, CliError> {
    build_workspace_binary(name, &[])
}

/// The program is started from a copy (`published/NAME` beside cargo's
/// file), for the reason [`crate::publish::publish`] gives: another `lamina` may be
/// building the same program at the moment this one starts it.
fn build_workspace_binary(name: &str, extra: &[&str]) -> Result<PathBuf, CliError> {
    let manifest = crate::project::lamina_root().join("Cargo.toml");
    let args: Vec<String> = ["--release", "--quiet", "-p", name]
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string())
        .collect();
    let built = cargo_build(&manifest, name, &args, &[], &[])?.artifact;
    let published = built
        .parent()
        .unwrap_or(Path::new("."))
        .join("published")
        .join(name);
    crate::publish::publish(&built, &published, false)?;
    Ok(published)
}

/// `cargo build` of the binary `bin` of the package at `manifest`; the
/// artifact's path comes from cargo's JSON messages, so custom target
/// directories just work.
fn cargo_build(
    manifest: &Path,
    bin: &str,
    args: &[String],
    env: &[(&str, String)],
    bin_flags: &[String],
) -> Result<Built, CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // `cargo rustc` passes the flags after `--` to the binary's crate alone.
    command
        .arg(if bin_flags.is_empty() {
            "build"
        } else {
            "rustc"
        })
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--bin")
        .arg(bin)
        .arg("--message-format=json-render-diagnostics")
        .args(args)
        .args(if bin_flags.is_empty() {
            &[][..]
        } else {
            &["--"][..]
        })
        .args(bin_flags)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // A guest build must not inherit the flags of the caller's build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::supervise::dying_with_lamina(&mut command, libc::SIGTERM);
    let mut child = command
        .spawn()
        .map_err(CliError::io("cannot start cargo"))?;
    let mut artifact = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(CliError::io("cannot read cargo's output"))?;
            if let Some(path) = executable_of(&line, bin) {
                artifact = Some(path);
            }
        }
    }
    let status = child
        .wait()
        .map_err(CliError::io("cannot wait for cargo"))?;
    match (status.success(), artifact) {
        (true, Some(artifact)) => Ok(Built {
            artifact,
            debug: None,
        }),
        (true, None) => Err(CliError::Project(format!(
            "cargo built no binary named '{bin}': is src/main.rs there?"
        ))),
        (false, _) => Err(CliError::BuildFailed),
    }
}

/// Takes the lock on `build_dir` (a file in it), waiting for another
/// `lamina` holding it, and saying so; released when the file is dropped.
fn lock_build_dir(build_dir: &Path) -> Result<std::fs::File, CliError> {
    std::fs::create_dir_all(build_dir).map_err(CliError::io(format!(
        "cannot create {}",
        build_dir.display()
    )))?;
    let path = build_dir.join(".lamina-build.lock");
    let file = std::fs::File::create(&path)
        .map_err(CliError::io(format!("cannot open {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "lamina: waiting for another lamina building in {}",
                build_dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(CliError::io(format!("cannot lock {}", path.display()))(e))
        }
    }
    file.lock()
        .map_err(CliError::io(format!("cannot lock {}", path.display())))?;
    Ok(file)
}

/// The executable named in one of cargo's JSON messages, if it is `name`'s.
fn executable_of(line: &str, name: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    if message.get("target")?.get("name")?.as_str()? != name {
        return None;
    }
    message.get("executable")?.as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"hello","kind":["bin"]},"executable":"/t/debug/hello"}"#;
        assert_eq!(
            executable_of(line, "hello"),
            Some(PathBuf::from("/t/debug/hello"))
        );
        assert_eq!(executable_of(line, "echo"), None);
        assert_eq!(
            executable_of(r#"{"reason":"build-finished","success":true}"#, "hello"),
            None
        );
        assert_eq!(executable_of("not json", "hello"), None);
    }
}
