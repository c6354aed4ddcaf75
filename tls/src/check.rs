//! Build-time checking of a certificate directory (feature `check`, for
//! build scripts): the same parsing the image does at boot, run before the
//! files are baked, so a bad certificate fails the build, not the boot.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use std::path::Path;

/// Checks that `dir` holds only `NAME.crt` files (PEM chain, leaf first)
/// each with its `NAME.key` (the leaf's private key), at least one pair, and
/// that every pair parses and matches. Returns the names, in the order the
/// image will use them (the first is the default certificate).
///
/// Anything else in the directory is refused: whatever is there would be
/// baked into the image, and a stray CA key must not be.
pub fn check_dir(dir: &Path) -> Result<Vec<String>, String> {
    let shown = dir.display();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{shown}: {e}"))?
        .map(|entry| {
            let entry = entry.map_err(|e| format!("{shown}: {e}"))?;
            entry
                .file_name()
                .into_string()
                .map_err(|name| format!("{shown}/{}: not a UTF-8 name", name.to_string_lossy()))
        })
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut names = Vec::new();
    for file in &files {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(format!(
                "{}: not a regular file (only NAME.crt and NAME.key belong here)",
                path.display()
            ));
        }
        if let Some(stem) = file.strip_suffix(".crt") {
            let key_path = dir.join(format!("{stem}.key"));
            let chain = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = std::fs::read(&key_path).map_err(|e| {
                format!(
                    "{}: {e} (every NAME.crt needs its NAME.key)",
                    key_path.display()
                )
            })?;
            crate::identity::certified_key(&format!("{shown}/{stem}"), &chain, &key)
                .map_err(|e| format!("{e}"))?;
            names.push(String::from(stem));
        } else if let Some(stem) = file.strip_suffix(".key") {
            if !files.iter().any(|f| *f == format!("{stem}.crt")) {
                return Err(format!(
                    "{}: a key without {stem}.crt (not baked: remove it)",
                    path.display()
                ));
            }
        } else {
            return Err(format!(
                "{}: only NAME.crt and NAME.key belong in a certificate directory (everything in it is baked into the image)",
                path.display()
            ));
        }
    }
    if names.is_empty() {
        return Err(format!("{shown}: no certificate (NAME.crt with NAME.key); `lamina tls dev-cert NAME` makes one"));
    }
    Ok(names)
}
