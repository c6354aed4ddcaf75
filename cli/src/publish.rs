//! Publishing what cargo built: a guest image (stripped for a release,
//! with IMAGE.debug beside it) or a host program (a tender,
//! lamina-usernet), copied to the path that is started, replaced only by
//! renaming a whole file over it. See [`publish`] for why.

use crate::guest::debug_path;
use crate::replace::{is_current, replace_whole};
use crate::CliError;
use std::path::{Path, PathBuf};

/// Puts the image cargo linked at `linked` (in the directory of cargo's
/// `guest` profile) at `image`, the path `lamina build` reports: a release
/// image stripped (`objcopy --strip-all`: the loaded bytes are the same,
/// the symbol table and the DWARF sections go), with the unstripped one,
/// symbols, line tables and all, beside it as IMAGE.debug (returned) for
/// the size report, backtraces and debuggers; any other image as linked.
///
/// Why not boot cargo's own file: cargo rewrites its output at every
/// build, even one with nothing to do (it removes the file, then
/// hard-links it again from deps/), so a unikernel started from that path
/// while another build of the same image ran could find no file (CI saw
/// it: a jitsu test's boot, beside another test's build). `image` is only
/// ever replaced by renaming a whole file over it: a reader finds the old
/// image or the new one, never none or part of one; builds running at once
/// each write their own temporary files, all with the same bytes.
pub fn publish(linked: &Path, image: &Path, release: bool) -> Result<Option<PathBuf>, CliError> {
    let (mut source, metadata) = open_linked(linked)?;
    let linked_at = metadata
        .modified()
        .map_err(CliError::io(format!("cannot read {}", linked.display())))?;
    let debug = release.then(|| debug_path(image));
    // The published files keep the time the image was linked: one that
    // was not relinked is neither rewritten nor looks rebuilt.
    let current = |path: &Path| is_current(path, linked_at);
    if current(image) && debug.as_deref().is_none_or(current) {
        return Ok(debug);
    }
    // Read through the handle opened above: the file cargo may link again
    // meanwhile is not read.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut source, &mut bytes)
        .map_err(CliError::io(format!("cannot read {}", linked.display())))?;
    if let Some(dir) = image.parent() {
        std::fs::create_dir_all(dir)
            .map_err(CliError::io(format!("cannot create {}", dir.display())))?;
    }
    // Writes `to` by `make` filling a temporary file, then renaming it.
    let place = |to: &Path, what: &str, make: &dyn Fn(&Path) -> Result<(), CliError>| {
        replace_whole(
            to,
            what,
            linked_at,
            make,
            CliError::io(format!("cannot write {}", to.display())),
        )
    };
    let copy = |part: &Path| {
        std::fs::write(part, &bytes)
            .and_then(|()| std::fs::set_permissions(part, metadata.permissions()))
            .map_err(CliError::io(format!("cannot write {}", part.display())))
    };
    let Some(debug) = debug else {
        place(image, "image", &copy)?;
        return Ok(None);
    };
    place(&debug, "debug", &copy)?;
    // Stripped from IMAGE.debug, a file of our own.
    place(image, "stripped", &|part: &Path| {
        let status = std::process::Command::new("objcopy")
            .arg("--strip-all")
            .arg(&debug)
            .arg(part)
            .status()
            .map_err(|e| CliError::MissingTool {
                what: format!("objcopy ({e})"),
                package: "binutils",
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(CliError::Project(format!(
                "objcopy --strip-all {} failed",
                debug.display()
            )))
        }
    })?;
    Ok(Some(debug))
}

/// Opens the program cargo linked at `linked`, with its metadata. Another
/// build's cargo may have removed it to link it again: it is back within
/// microseconds, so a missing file is looked for again for up to 0.5 s.
fn open_linked(linked: &Path) -> Result<(std::fs::File, std::fs::Metadata), CliError> {
    let mut tries = 0;
    loop {
        match std::fs::File::open(linked).and_then(|file| Ok((file.metadata()?, file))) {
            Ok((metadata, file)) => return Ok((file, metadata)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(CliError::io(format!("cannot read {}", linked.display()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_image_stays_while_cargo_rewrites_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let linked = dir.path().join("guest").join("app");
        std::fs::create_dir_all(linked.parent().unwrap()).unwrap();
        // Any ELF file with symbols will do: this test program.
        std::fs::copy(std::env::current_exe().unwrap(), &linked).unwrap();
        let image = dir.path().join("release").join("app");
        let debug = publish(&linked, &image, true).unwrap().unwrap();
        let bytes = |path: &Path| std::fs::read(path).unwrap();
        assert_eq!(bytes(&debug), bytes(&linked));
        assert!(bytes(&image).len() < bytes(&debug).len(), "not stripped");
        let inode =
            |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
        let published = inode(&image);
        // Nothing relinked: nothing is written again.
        publish(&linked, &image, true).unwrap();
        assert_eq!(inode(&image), published);
        // cargo's next build removes its file before linking it again:
        // the published image is a file of its own.
        std::fs::remove_file(&linked).unwrap();
        assert!(image.is_file() && debug.is_file());

        // A relinked image (a new time) replaces the published one; an
        // image built without --release is published as linked.
        std::fs::copy(std::env::current_exe().unwrap(), &linked).unwrap();
        let plain = dir.path().join("release").join("plain");
        assert_eq!(publish(&linked, &plain, false).unwrap(), None);
        assert_eq!(bytes(&plain), bytes(&linked));
        publish(&linked, &image, true).unwrap();
        assert_ne!(inode(&image), published);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("release"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| {
                name.to_string_lossy().contains('.') && !name.to_string_lossy().ends_with(".debug")
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
