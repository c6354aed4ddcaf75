//! Building unikernel images (spt, hvt, virtio): the same cargo build as unix, with
//! the guest's flags and its own target directory. (The device manifest is
//! built by the application itself, from its `lamina::devices!`.)
//!
//! Guests are `#![no_std]` binaries for the host triple, linked statically
//! at a fixed address with Lamina's linker script. Passing `--target`
//! explicitly makes the guest flags (RUSTFLAGS) apply to the guest only, not
//! to build scripts and proc-macros, which stay ordinary host programs.

use crate::project::{lamina_root, Project};
use crate::{CliError, Target};
use std::path::{Path, PathBuf};

/// The host triple guests are built for.
pub const GUEST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The directory of `target`'s runtime and linker script under `targets/`.
pub fn runtime_dir(target: Target) -> &'static str {
    if target == Target::Virtio {
        "virtio"
    } else {
        "solo5"
    }
}

/// The flags that make a guest image out of a `no_std` binary, with this
/// copy of Lamina's linker script.
pub fn rustflags(target: Target) -> Vec<String> {
    let script = lamina_root()
        .join("targets")
        .join(runtime_dir(target))
        .join("link.ld");
    flags(target, &script.display().to_string())
}

/// The guest flags with the linker script at `script`. (Its path reaches
/// only the linker, never the image; the provenance records it as
/// `/lamina/targets/...`.) Release images are not stripped here but after
/// the link ([`split_debug`]), which keeps the unstripped one.
pub fn flags(target: Target, script: &str) -> Vec<String> {
    let flags = vec![
        format!("--cfg lamina_target=\"{}\"", target.name()),
        "-C relocation-model=static".into(),
        "-C target-feature=+crt-static".into(),
        "-C link-arg=-nostartfiles".into(),
        "-C link-arg=-nostdlib".into(),
        format!("-C link-arg=-Wl,-T,{script}"),
        "-C link-arg=-Wl,--gc-sections".into(),
        "-C link-arg=-Wl,-z,max-page-size=0x1000".into(),
        "-C link-arg=-Wl,--build-id=none".into(),
        // A panic prints its backtrace by walking frame pointers (see
        // lamina-metal's `backtrace`). Measured cost on the release
        // selftest image for spt: 100,344 bytes with and without (the same
        // .text size, 0x1219e; 196 functions set up a frame instead of 51),
        // and `--test=compute` (100M rounds) 464-570 ms with, 497-524 ms
        // without, three runs each: within the noise.
        "-C force-frame-pointers=yes".into(),
    ];
    flags
}

/// The unstripped copy `lamina build` keeps beside a release image.
pub fn debug_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".debug");
    PathBuf::from(name)
}

/// The file holding `image`'s symbols: IMAGE.debug beside a stripped
/// release image, else the image itself.
pub fn with_symbols(image: &Path) -> PathBuf {
    let debug = debug_path(image);
    if debug.is_file() {
        debug
    } else {
        image.to_path_buf()
    }
}

/// Whether the ELF file `bytes` has a symbol table.
fn has_symbols(bytes: &[u8]) -> bool {
    lamina_tender::elf::Elf::parse(bytes)
        .ok()
        .and_then(|elf| lamina_tender::elf_contents::sections(&elf).ok())
        .is_some_and(|sections| sections.iter().any(|s| s.name == ".symtab"))
}

/// Keeps the freshly linked release image, symbols, line tables and all,
/// as IMAGE.debug for the size report, backtraces and debuggers, and
/// strips IMAGE (`objcopy --strip-all`: the loaded bytes are the same, the
/// symbol table and the DWARF sections go). An image that is already stripped was
/// not relinked: its IMAGE.debug is still the right one.
pub fn split_debug(image: &Path) -> Result<PathBuf, CliError> {
    let debug = debug_path(image);
    let bytes = crate::read_file(image)?;
    if !has_symbols(&bytes) {
        return Ok(debug);
    }
    let linked = std::fs::metadata(image)
        .and_then(|m| m.modified())
        .map_err(CliError::io(format!("cannot read {}", image.display())))?;
    // Builds of one image may run at once (cargo serialises the linking,
    // not what follows it): each writes its own temporary files and renames
    // them into place, which is atomic, so no reader ever sees a partial
    // image and no build takes another's file. They all write the same bytes.
    let temporary = |what: &str| {
        let mut name = image.as_os_str().to_owned();
        name.push(format!(".{what}.{}", std::process::id()));
        PathBuf::from(name)
    };
    let debug_part = temporary("debug");
    std::fs::write(&debug_part, &bytes)
        .and_then(|()| std::fs::rename(&debug_part, &debug))
        .map_err(CliError::io(format!("cannot write {}", debug.display())))?;
    let stripped = temporary("stripped");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-all")
        .arg(&debug)
        .arg(&stripped)
        .status()
        .map_err(|e| CliError::MissingTool {
            what: format!("objcopy ({e})"),
            package: "binutils",
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&stripped);
        return Err(CliError::Project(format!(
            "objcopy --strip-all {} failed",
            debug.display()
        )));
    }
    // The stripped image keeps the time it was linked: cargo puts the
    // unstripped file back at each build (a hard link from deps/), and an
    // image that was not relinked must not look rebuilt.
    std::fs::File::options()
        .write(true)
        .open(&stripped)
        .and_then(|file| file.set_modified(linked))
        .map_err(CliError::io(format!("cannot write {}", stripped.display())))?;
    // A new file, not the one cargo hard-linked from deps/: that one stays
    // as it was linked.
    std::fs::rename(&stripped, image)
        .map_err(CliError::io(format!("cannot replace {}", image.display())))?;
    Ok(debug)
}

/// How much debug information a guest image carries (in IMAGE.debug for a
/// stripped release image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debuginfo {
    /// Functions, inlined functions and file:line of every instruction:
    /// what named backtraces, fault reports and gdb's `bt` read. The
    /// default: quicker to build than full (see [`profile_args`]).
    LineTables,
    /// Also variables, arguments and types, for gdb's `print` and `info
    /// locals` (`--full-debuginfo`, and what `lamina run --gdb` builds).
    Full,
}

/// How a guest image is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// `--release`: size-optimised and stripped, IMAGE.debug kept beside
    /// it; otherwise debug assertions at opt-level 1.
    pub release: bool,
    /// How much debug information the image (or its IMAGE.debug) carries.
    pub debuginfo: Debuginfo,
}

impl Profile {
    /// `--release` or not, with line tables.
    pub fn new(release: bool) -> Profile {
        Profile {
            release,
            debuginfo: Debuginfo::LineTables,
        }
    }

    /// The profile `--release` and `--full-debuginfo` ask for.
    pub fn of_options(release: bool, full_debuginfo: bool) -> Profile {
        Profile {
            release,
            debuginfo: if full_debuginfo {
                Debuginfo::Full
            } else {
                Debuginfo::LineTables
            },
        }
    }

    /// The `lamina build` options that select this profile, as the
    /// provenance records them and `lamina verify` passes them again.
    pub fn options(self) -> Vec<&'static str> {
        let mut options = Vec::new();
        if self.release {
            options.push("--release");
        }
        if self.debuginfo == Debuginfo::Full {
            options.push(FULL_DEBUGINFO);
        }
        options
    }
}

/// The option that asks for [`Debuginfo::Full`].
pub const FULL_DEBUGINFO: &str = "--full-debuginfo";

/// Profile overrides of a guest build without `--release`: the crates that
/// touch every byte of every frame, at opt-level 3.
const HOT_BYTE_CRATES: [&str; 1] = ["profile.release.package.lamina-wire.opt-level=3"];

/// cargo arguments for the guest profile: `panic = "abort"` and LTO always
/// (they remove the unwinding machinery the prebuilt `alloc` refers to);
/// size-optimised for `--release`, debug assertions otherwise (at
/// opt-level 1, but [`HOT_BYTE_CRATES`] at 3); line tables, or full debug
/// information, either way.
///
/// Line tables by default: `lamina build -t hvt website` without
/// `--release`, from an empty target directory, took 141.8 s with full
/// debug information and 117.8 s with line tables, and after a change to
/// the application 12.0 s and 7.4 s (medians of 3); the image is 6367 KiB
/// and 2098 KiB (a shared two-core machine). A release build's line tables
/// go to IMAGE.debug only: the stripped image is the same without them.
pub fn profile_args(profile: Profile) -> Vec<String> {
    let mut args = vec!["--release".to_owned()];
    let mut config = vec![
        "profile.release.panic=\"abort\"",
        "profile.release.lto=true",
        "profile.release.codegen-units=1",
    ];
    config.push(match profile.debuginfo {
        Debuginfo::LineTables => "profile.release.debug=\"line-tables-only\"",
        Debuginfo::Full => "profile.release.debug=true",
    });
    if profile.release {
        config.push("profile.release.opt-level=\"s\"");
    } else {
        config.push("profile.release.opt-level=1");
        config.push("profile.release.debug-assertions=true");
        config.push("profile.release.overflow-checks=true");
        // The byte loops every frame runs through (checksums, segment
        // copies) are optimised fully even here, as they are in release,
        // keeping their debug assertions and overflow checks.
        for hot in HOT_BYTE_CRATES {
            config.push(hot);
        }
    }
    for c in config {
        args.push("--config".into());
        args.push(c.into());
    }
    args
}

/// The directory under the target directory that guest builds of the
/// target named `target` with `profile` go to: each profile its own, so
/// that builds of one image with two profiles (a test's `--gdb` run beside
/// another's plain one) neither rebuild nor overwrite each other's.
fn profile_dir(target: &str, profile: Profile) -> String {
    format!(
        "lamina-{target}{}{}",
        if profile.release { "" } else { "-debug" },
        match profile.debuginfo {
            Debuginfo::LineTables => "",
            Debuginfo::Full => "-full-debuginfo",
        }
    )
}

/// Where guest builds of `target` go, apart from host builds.
pub fn target_dir(project: &Project, target: Target, profile: Profile) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::provenance::workspace(project).target_dir);
    base.join(profile_dir(target.name(), profile))
}

/// The image `lamina build` makes of the application `app` for the target
/// named `target` when the target directory is `base` (`CARGO_TARGET_DIR`).
pub fn image_path(base: &Path, target: &str, profile: Profile, app: &str) -> PathBuf {
    base.join(profile_dir(target, profile))
        .join(GUEST_TRIPLE)
        .join("release")
        .join(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_profiles() -> Vec<Profile> {
        [false, true]
            .into_iter()
            .flat_map(|release| [false, true].map(|full| Profile::of_options(release, full)))
            .collect()
    }

    #[test]
    fn each_profile_builds_in_a_directory_of_its_own() {
        let dirs: std::collections::BTreeSet<String> = all_profiles()
            .into_iter()
            .map(|profile| profile_dir("hvt", profile))
            .collect();
        assert_eq!(dirs.len(), 4, "{dirs:?}");
        // Where the README and earlier builds put the plain ones.
        let base = Path::new("/t");
        assert_eq!(
            image_path(base, "hvt", Profile::new(false), "app"),
            Path::new("/t/lamina-hvt-debug/x86_64-unknown-linux-gnu/release/app")
        );
        assert_eq!(
            image_path(base, "spt", Profile::new(true), "app"),
            Path::new("/t/lamina-spt/x86_64-unknown-linux-gnu/release/app")
        );
    }

    #[test]
    fn a_profile_is_recorded_as_the_options_that_ask_for_it() {
        for profile in all_profiles() {
            let options = profile.options();
            let again = Profile::of_options(
                options.contains(&"--release"),
                options.contains(&FULL_DEBUGINFO),
            );
            assert_eq!(again, profile, "{options:?}");
            let args = profile_args(profile).join(" ");
            let full = args.contains("profile.release.debug=true");
            let lines = args.contains("profile.release.debug=\"line-tables-only\"");
            assert_eq!(
                (full, lines),
                (
                    profile.debuginfo == Debuginfo::Full,
                    profile.debuginfo == Debuginfo::LineTables
                ),
                "{args}"
            );
        }
    }
}
