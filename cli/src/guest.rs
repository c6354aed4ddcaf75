//! Building unikernel images (spt, hvt, virtio): the same cargo build as unix, with
//! the guest's flags and its own target directory. (The device manifest is
//! built by the application itself, from its `lamina::devices!`.)
//!
//! Guests are `#![no_std]` binaries for the host triple, linked statically
//! at a fixed address with Lamina's linker script. Passing `--target`
//! explicitly makes the guest flags (RUSTFLAGS) apply to the guest only, not
//! to build scripts and proc-macros, which stay ordinary host programs.

use crate::project::{lamina_root, Project};
use crate::Target;
use std::path::{Path, PathBuf};

/// The host triple guests are built for.
pub const GUEST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The cargo profile guest images are built with: the workspace's
/// `release` profile with the overrides of [`profile_args`]. Its own name
/// gives cargo's output a directory (`guest/`) apart from the `release/`
/// one where [`crate::publish::publish`] puts the images `lamina build` reports.
pub const GUEST_PROFILE: &str = "guest";

/// The directory of `target`'s runtime and linker script under `targets/`.
pub fn runtime_dir(target: Target) -> &'static str {
    if target == Target::Virtio {
        "virtio"
    } else {
        "solo5"
    }
}

/// The flags every crate of a guest build is compiled with (RUSTFLAGS).
/// They are the same for spt, hvt and virtio, which differ only in the
/// `lamina` crate's feature and the application's own flags
/// ([`app_flags`]): one build of the libraries below (smoltcp, rustls,
/// ring, Lamina's own) serves every target. Release images are not
/// stripped here but after the link ([`crate::publish::publish`]), which keeps the
/// unstripped one.
pub fn flags() -> Vec<String> {
    vec![
        "--cfg lamina_guest".into(),
        "-C relocation-model=static".into(),
        "-C target-feature=+crt-static".into(),
        // A panic prints its backtrace by walking frame pointers (see
        // lamina-metal's `backtrace`). Measured cost on the release
        // selftest image for spt: 100,344 bytes with and without (the same
        // .text size, 0x1219e; 196 functions set up a frame instead of 51),
        // and `--test=compute` (100M rounds) 464-570 ms with, 497-524 ms
        // without, three runs each: within the noise.
        "-C force-frame-pointers=yes".into(),
    ]
}

/// The flags of the application's crate alone (`cargo rustc -- FLAGS`):
/// `cfg(lamina_target = "...")` for code of its own that differs by target,
/// and the link, with this copy of Lamina's linker script for `target`.
pub fn app_flags(target: Target) -> Vec<String> {
    let script = lamina_root()
        .join("targets")
        .join(runtime_dir(target))
        .join("link.ld");
    app_flags_with(target, &script.display().to_string())
}

/// [`app_flags`] with the linker script at `script`. (Its path reaches
/// only the linker, never the image; the provenance records it as
/// `/lamina/targets/...`.)
pub fn app_flags_with(target: Target, script: &str) -> Vec<String> {
    vec![
        format!("--cfg=lamina_target=\"{}\"", target.name()),
        "--check-cfg=cfg(lamina_target,values(\"spt\",\"hvt\",\"virtio\"))".into(),
        "-Clink-arg=-nostartfiles".into(),
        "-Clink-arg=-nostdlib".into(),
        format!("-Clink-arg=-Wl,-T,{script}"),
        "-Clink-arg=-Wl,--gc-sections".into(),
        "-Clink-arg=-Wl,-z,max-page-size=0x1000".into(),
        "-Clink-arg=-Wl,--build-id=none".into(),
    ]
}

/// The `lamina` crate's feature that picks `target`'s runtime.
pub fn target_feature(target: Target) -> String {
    format!("lamina/{}", target.name())
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
const HOT_BYTE_CRATES: [&str; 1] = ["profile.guest.package.lamina-wire.opt-level=3"];

/// cargo arguments for the guest profile ([`GUEST_PROFILE`]): `panic =
/// "abort"` and LTO always (they remove the unwinding machinery the
/// prebuilt `alloc` refers to);
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
    let mut args = vec!["--profile".to_owned(), GUEST_PROFILE.to_owned()];
    let mut config = vec![
        "profile.guest.inherits=\"release\"",
        "profile.guest.panic=\"abort\"",
        "profile.guest.lto=true",
        "profile.guest.codegen-units=1",
    ];
    config.push(match profile.debuginfo {
        Debuginfo::LineTables => "profile.guest.debug=\"line-tables-only\"",
        Debuginfo::Full => "profile.guest.debug=true",
    });
    if profile.release {
        config.push("profile.guest.opt-level=\"s\"");
    } else {
        config.push("profile.guest.opt-level=1");
        config.push("profile.guest.debug-assertions=true");
        config.push("profile.guest.overflow-checks=true");
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

/// The suffix of `profile`'s directories under the target directory: each
/// profile has its own, so that builds of one image with two profiles (a
/// test's `--gdb` run beside another's plain one) neither rebuild nor
/// overwrite each other's.
fn profile_suffix(profile: Profile) -> String {
    format!(
        "{}{}",
        if profile.release { "" } else { "-debug" },
        match profile.debuginfo {
            Debuginfo::LineTables => "",
            Debuginfo::Full => "-full-debuginfo",
        }
    )
}

/// The directory under the target directory that `lamina build` puts the
/// images of the target named `target` with `profile` in.
fn profile_dir(target: &str, profile: Profile) -> String {
    format!("lamina-{target}{}", profile_suffix(profile))
}

/// The target directory (`CARGO_TARGET_DIR`, else the application's
/// workspace's).
fn base_dir(project: &Project) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::provenance::workspace(project).target_dir)
}

/// Where the images `lamina build` makes of `project` for `target` with
/// `profile` go (see [`image_in`]), apart from host builds.
pub fn target_dir(project: &Project, target: Target, profile: Profile) -> PathBuf {
    base_dir(project).join(profile_dir(target.name(), profile))
}

/// Where cargo builds guests with `profile`, for every target: the
/// libraries are compiled once for all of them (see [`flags`]).
pub fn build_dir(project: &Project, profile: Profile) -> PathBuf {
    base_dir(project).join(format!("lamina-guest{}", profile_suffix(profile)))
}

/// The image `lamina build` makes of the application `app` for the target
/// named `target` when the target directory is `base` (`CARGO_TARGET_DIR`).
pub fn image_path(base: &Path, target: &str, profile: Profile, app: &str) -> PathBuf {
    image_in(&base.join(profile_dir(target, profile)), app)
}

/// The image of the application `app` built in `target_dir` (a
/// [`target_dir`]): where [`crate::publish::publish`] puts it.
pub fn image_in(target_dir: &Path, app: &str) -> PathBuf {
    target_dir.join(GUEST_TRIPLE).join("release").join(app)
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
        let builds: std::collections::BTreeSet<String> = all_profiles()
            .into_iter()
            .map(|profile| format!("lamina-guest{}", profile_suffix(profile)))
            .collect();
        assert_eq!(builds.len(), 4, "{builds:?}");
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
            let full = args.contains("profile.guest.debug=true");
            let lines = args.contains("profile.guest.debug=\"line-tables-only\"");
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
