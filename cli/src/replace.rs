//! Replacing a file only by renaming a whole new one over it, stamped with
//! the time of what it was made from: a reader (a tender booting an image,
//! a test starting a program) finds the old file or the new one, never
//! none or part of one, and a copy that is current is not written again.
//!
//! Shared with the tests (`cli/tests/common.rs` includes this file), which
//! publish the programs they start the same way: so this module uses
//! nothing of the crate.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Whether `path` exists and carries the modification time `made`: a copy
/// made from a source of that time.
pub fn is_current(path: &Path, made: SystemTime) -> bool {
    std::fs::metadata(path).and_then(|m| m.modified()).ok() == Some(made)
}

/// Writes `to` by `make` filling a temporary file beside it
/// (`TO.WHAT.PID`: builds running at once each write their own), stamps
/// it with `made`, then renames it over `to`. The temporary file is
/// removed if anything fails; `io` turns a failure of the stamp or the
/// rename into the caller's error.
pub fn replace_whole<E>(
    to: &Path,
    what: &str,
    made: SystemTime,
    make: impl FnOnce(&Path) -> Result<(), E>,
    io: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    let mut name = to.as_os_str().to_owned();
    name.push(format!(".{what}.{}", std::process::id()));
    let part = PathBuf::from(name);
    let placed = make(&part).and_then(|()| {
        std::fs::File::options()
            .write(true)
            .open(&part)
            .and_then(|file| file.set_modified(made))
            .and_then(|()| std::fs::rename(&part, to))
            .map_err(io)
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    placed
}
