//! `lamina verify IMAGE [SOURCE]`: rebuilds an image from the provenance
//! it records (application, target, profile, the `LAMINA_*` build inputs)
//! from the checkout SOURCE (default: the one holding the current
//! directory), in a fresh target directory, and compares the two files
//! byte for byte: "identical", or the first difference with the section
//! (or header) it falls in. SOURCE must be at the recorded commit.

use crate::guest::{self, Profile};
use crate::inspect;
use crate::provenance::{self, Provenance};
use crate::CliError;
use lamina_tender::elf::Elf;
use lamina_tender::elf_contents::{self, SHT_NOBITS};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the first difference between two images falls.
pub fn place_of(bytes: &[u8], offset: u64) -> String {
    let Ok(elf) = Elf::parse(bytes) else {
        return "the image is not a valid ELF file".into();
    };
    if offset < 64 {
        return "the ELF header".into();
    }
    if let Ok(sections) = elf_contents::sections(&elf) {
        let found = sections.iter().find(|s| {
            s.sh_type != SHT_NOBITS
                && s.offset <= offset
                && offset < s.offset.saturating_add(s.size)
        });
        if let Some(s) = found {
            return format!(
                "section {} at +{:#x} (address {:#x})",
                if s.name.is_empty() {
                    "(unnamed)"
                } else {
                    &s.name
                },
                offset - s.offset,
                s.addr.saturating_add(offset - s.offset)
            );
        }
    }
    for ph in elf.program_headers() {
        if ph.offset <= offset && offset < ph.offset.saturating_add(ph.filesz) {
            return format!(
                "segment {} at +{:#x} (address {:#x}), outside every section",
                ph.index,
                offset - ph.offset,
                ph.vaddr.saturating_add(offset - ph.offset)
            );
        }
    }
    "the headers or padding between sections".into()
}

/// The first offset at which `a` and `b` differ (the shorter one's
/// length if one is a prefix of the other), or None if identical.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    if a == b {
        return None;
    }
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    Some(same as u64)
}

/// A fresh empty directory for the rebuild.
fn fresh_dir() -> Result<PathBuf, CliError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("lamina-verify-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(CliError::io(format!("cannot create {}", dir.display())))?;
    Ok(dir)
}

fn recorded<'a>(p: &'a Provenance, key: &str) -> Result<&'a str, CliError> {
    p.get(key).ok_or_else(|| {
        CliError::Project(format!(
            "the image's provenance records no {key}: cannot rebuild it"
        ))
    })
}

/// `lamina verify`. Ok(true) if the rebuild is identical.
pub fn verify(
    image: &Path,
    source: Option<&Path>,
    target_dir: Option<&Path>,
) -> Result<bool, CliError> {
    let bytes = crate::read_file(image)?;
    let report = inspect::report(&bytes)
        .map_err(|e| CliError::Project(format!("{}: {e}", image.display())))?;
    let provenance = Provenance {
        fields: report.provenance.ok_or_else(|| {
            CliError::Project(format!(
                "{}: no provenance note: it was not built by lamina build, nothing says how to rebuild it",
                image.display()
            ))
        })?,
    };
    let target = recorded(&provenance, "target")?;
    let profile = recorded(&provenance, "profile")?;
    let app = recorded(&provenance, "app")?;
    let package = recorded(&provenance, "package")?;
    let commit = recorded(&provenance, "commit")?;
    if !matches!(target, "spt" | "hvt" | "virtio") {
        return Err(CliError::Project(format!(
            "the recorded target '{target}' is not a unikernel target"
        )));
    }
    let here =
        std::env::current_dir().map_err(CliError::io("cannot read the current directory"))?;
    let (root, head) = provenance::git_checkout(source.unwrap_or(&here)).ok_or_else(|| {
        CliError::Project(format!(
            "{} is not in a git checkout: give the source checkout as SOURCE",
            source.unwrap_or(&here).display()
        ))
    })?;
    if commit == "none" {
        return Err(CliError::Project(
            "the image records no source commit (it was built outside git): it cannot be rebuilt from a checkout".into(),
        ));
    }
    if head != commit {
        return Err(CliError::Project(format!(
            "{} is at commit {head}, the image was built from {commit}: check that commit out (git -C {} checkout {commit}) and verify again",
            root.display(),
            root.display()
        )));
    }
    if provenance.get("dirty") == Some("true") {
        eprintln!("lamina: the image was built from a tree with uncommitted changes: a rebuild from the commit may differ");
    }
    if provenance::is_dirty(&root) {
        eprintln!("lamina: {} has uncommitted changes or untracked files: they go into the rebuild (and its provenance says dirty)", root.display());
    }
    let (base, temporary) = match target_dir {
        Some(dir) => (dir.to_path_buf(), false),
        None => (fresh_dir()?, true),
    };
    let full_debuginfo = provenance
        .get("options")
        .is_some_and(|options| options.split(' ').any(|o| o == guest::FULL_DEBUGINFO));
    let recorded_profile = Profile::of_options(profile == "release", full_debuginfo);
    let mut build = Command::new(
        std::env::current_exe().map_err(CliError::io("cannot find the lamina program"))?,
    );
    build.arg("build").arg("-t").arg(target);
    build.args(recorded_profile.options());
    build.arg(root.join(package));
    build.env("CARGO_TARGET_DIR", &base);
    // The rebuild takes Lamina's runtimes and linker scripts from SOURCE
    // when it is a Lamina checkout, as the recorded build did.
    if root.join("targets/solo5/link.ld").is_file() {
        build.env("LAMINA_HOME", &root);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("LAMINA_") && key != "LAMINA_HOME" {
            build.env_remove(key);
        }
    }
    for (key, value) in &provenance.fields {
        if let Some(name) = key.strip_prefix("env.") {
            build.env(name, value);
        }
    }
    eprintln!(
        "lamina: rebuilding {app} for {target} ({profile}) from {} at {commit} in {}",
        root.join(package).display(),
        base.display()
    );
    let status = build
        .status()
        .map_err(CliError::io("cannot run lamina build"))?;
    let rebuilt = guest::image_path(&base, target, recorded_profile, app);
    let result = if status.success() {
        std::fs::read(&rebuilt).map_err(CliError::io(format!("cannot read {}", rebuilt.display())))
    } else {
        Err(CliError::BuildFailed)
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    let again = result?;
    match first_difference(&bytes, &again) {
        None => {
            println!(
                "identical: {} and its rebuild from {} are byte-identical ({} bytes)",
                image.display(),
                root.display(),
                bytes.len()
            );
            Ok(true)
        }
        Some(offset) => {
            println!(
                "different: {} ({} bytes) and its rebuild ({} bytes) first differ at file offset {offset:#x}, in {}",
                image.display(),
                bytes.len(),
                again.len(),
                place_of(&bytes, offset)
            );
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_differences() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(place_of(b"junk", 2), "the image is not a valid ELF file");
    }
}
