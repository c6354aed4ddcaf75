//! `lamina build`: drive cargo for a target.

use crate::project::Project;
use crate::{CliError, Target};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A built application.
#[derive(Debug)]
pub struct Built {
    /// The program (unix) or image (unikernel targets).
    pub artifact: PathBuf,
}

/// Builds `project` for `target`, showing cargo's progress.
pub fn build(project: &Project, target: Target, release: bool) -> Result<Built, CliError> {
    let started = Instant::now();
    let built = match target {
        Target::Unix => cargo_build(project, release)?,
        Target::Spt | Target::Hvt | Target::Virtio => {
            return Err(CliError::TargetUnavailable {
                target: target.name(),
                why: "unikernel images come with the bare-metal runtime and the tenders; use --target unix for now"
                    .into(),
            })
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

/// `cargo build` of the project's binary; the artifact's path comes from
/// cargo's JSON messages, so custom target directories just work.
fn cargo_build(project: &Project, release: bool) -> Result<Built, CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(project.dir.join("Cargo.toml"))
        .arg("--bin")
        .arg(&project.name)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let mut child = command
        .spawn()
        .map_err(CliError::io("cannot start cargo"))?;
    let mut artifact = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(CliError::io("cannot read cargo's output"))?;
            if let Some(path) = executable_of(&line, &project.name) {
                artifact = Some(path);
            }
        }
    }
    let status = child
        .wait()
        .map_err(CliError::io("cannot wait for cargo"))?;
    match (status.success(), artifact) {
        (true, Some(artifact)) => Ok(Built { artifact }),
        (true, None) => Err(CliError::Project(format!(
            "cargo built no binary named '{}': is src/main.rs there?",
            project.name
        ))),
        (false, _) => Err(CliError::BuildFailed),
    }
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
