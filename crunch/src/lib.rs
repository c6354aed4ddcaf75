//! # lamina-crunch: a directory baked into the image
//!
//! Called from an application's `build.rs`, [`bake`] walks a directory and
//! writes Rust source defining a `static` [`Baked`] store: every regular file
//! below the directory, keyed by its normalised path, with its media type
//! and an ETag computed now, at build time. The bytes are `include_bytes!`d,
//! so they live in the image's read-only data and cost no heap.
//!
//! ```no_run
//! // build.rs
//! lamina_crunch::bake("site", "SITE").expect("cannot bake the site");
//! // main.rs: include!(concat!(env!("OUT_DIR"), "/SITE.rs"));  -> static SITE: Baked
//! ```
//!
//! The generated source also records the directory in the image's
//! provenance (`lamina::baked_note!`): its SHA-256 digest as
//! [`dir_digest`] computes it, the number of files and the directory's name.
//!
//! Only regular files are taken; symbolic links are refused, so nothing
//! outside the directory can be baked in by accident. Names must be UTF-8
//! without backslashes; anything else is an error naming the file.
//!
//! [`Baked`]: https://docs.rs/lamina-core

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

/// Why baking failed; the message names the file.
#[derive(Debug)]
pub struct CrunchError(pub String);

impl std::fmt::Display for CrunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrunchError {}

/// The media type for a file name, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// A strong validator: 64-bit FNV-1a of the bytes and their length, quoted.
pub fn etag(data: &[u8]) -> String {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(data);
    format!("\"{:016x}-{:x}\"", h.finish(), data.len())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), CrunchError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CrunchError(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| CrunchError(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| CrunchError(format!("{}: {e}", path.display())))?;
        if kind.is_symlink() {
            return Err(CrunchError(format!(
                "{}: symbolic links are not baked",
                path.display()
            )));
        }
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path
                .strip_prefix(root)
                .map_err(|_| CrunchError(format!("{} is outside the root", path.display())))?;
            let key = relative
                .to_str()
                .filter(|k| !k.contains('\\'))
                .ok_or_else(|| {
                    CrunchError(format!(
                        "{}: names must be UTF-8 without backslashes",
                        path.display()
                    ))
                })?
                .to_owned();
            out.push((key, path));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The files below `dir`, sorted by their path relative to it.
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>, CrunchError> {
    let root = dir
        .canonicalize()
        .map_err(|e| CrunchError(format!("{}: {e}", dir.display())))?;
    let mut files = Vec::new();
    walk(&root, &root, &mut files)?;
    files.sort();
    Ok(files)
}

/// The digest of a directory recorded in the image: SHA-256 of one line
/// `HEX  PATH\n` per file (HEX its SHA-256, PATH relative to `dir`),
/// sorted by path; what `find . -type f -printf '%P\n' | LC_ALL=C sort |
/// xargs sha256sum | sha256sum` prints in `dir`. With the number of files.
pub fn dir_digest(dir: &Path) -> Result<(String, usize), CrunchError> {
    let files = files_of(dir)?;
    let mut listing = Sha256::new();
    for (key, path) in &files {
        let data =
            std::fs::read(path).map_err(|e| CrunchError(format!("{}: {e}", path.display())))?;
        listing.update(format!("{}  {key}\n", hex(&Sha256::digest(&data))));
    }
    Ok((hex(&listing.finalize()), files.len()))
}

/// The `lamina::baked_note!` line recording `dir` (as the build script
/// named it) under `name`, with the `bytes` it put in the image. A directory outside the package (an absolute
/// path, or one through `..`) is named by its last component only, so that
/// no path of the build machine gets into the image.
fn baked_note(
    dir_as_named: &str,
    dir: &Path,
    name: &str,
    bytes: usize,
) -> Result<String, CrunchError> {
    let (digest, files) = if dir.is_dir() {
        dir_digest(dir)?
    } else {
        (hex(&Sha256::digest(b"")), 0)
    };
    let named = Path::new(dir_as_named);
    let inside = named.is_relative()
        && named
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    let shown = if inside {
        dir_as_named.to_owned()
    } else {
        named
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let text = format!("{name}={digest} files={files} bytes={bytes} dir={shown}");
    Ok(format!(
        "// {name} in the image's provenance.\nlamina::baked_note!({text:?});\n"
    ))
}

/// Generates the source of a `static NAME: Baked` holding every file below
/// `dir`.
pub fn generate(dir: &Path, name: &str) -> Result<String, CrunchError> {
    let files = files_of(dir)?;
    let mut src = format!("/// Baked from {} at build time.\npub static {name}: lamina::device::Baked = lamina::device::Baked::new(&[\n", dir.display());
    for (key, path) in &files {
        let data =
            std::fs::read(path).map_err(|e| CrunchError(format!("{}: {e}", path.display())))?;
        let _ = writeln!(
            src,
            "    lamina::device::BakedFile {{ key: {key:?}, data: include_bytes!({path:?}), content_type: {ct:?}, etag: {etag:?} }},",
            ct = content_type(key),
            etag = etag(&data),
            path = path.display().to_string(),
        );
    }
    src.push_str("]);\n");
    Ok(src)
}

/// For build scripts: bakes `dir` (relative to the package) into
/// `$OUT_DIR/NAME.rs` and asks cargo to rebuild when it changes.
pub fn bake(dir: &str, name: &str) -> Result<(), CrunchError> {
    let path = watch(dir)?;
    let mut source = generate(&path, name)?;
    let bytes = files_of(&path)?
        .iter()
        .map(|(_, file)| std::fs::metadata(file).map_or(0, |m| m.len() as usize))
        .sum();
    source.push_str(&baked_note(dir, &path, name, bytes)?);
    write_out(&format!("{name}.rs"), source.as_bytes()).map(drop)
}

/// For build scripts: bakes bytes made from `dir` (relative to the
/// package; e.g. zones a reader checked and packed) into `$OUT_DIR`, as
/// `NAME.bin` and `NAME.rs` defining `pub static NAME: &[u8]`, the bytes
/// in the image's read-only data. Cargo rebuilds when `dir` changes.
///
/// ```no_run
/// // build.rs
/// let dir = "zones";
/// let bytes = b"made from the files of zones/".to_vec();
/// lamina_crunch::bake_bytes(dir, "ZONES", &bytes).expect("cannot bake the zones");
/// // main.rs: include!(concat!(env!("OUT_DIR"), "/ZONES.rs"));  -> static ZONES: &[u8]
/// ```
pub fn bake_bytes(dir: &str, name: &str, bytes: &[u8]) -> Result<(), CrunchError> {
    let path = watch(dir)?;
    let data = write_out(&format!("{name}.bin"), bytes)?;
    let source = format!(
        "/// Baked from {dir} at build time.\npub static {name}: &[u8] = include_bytes!({path:?});\n{note}",
        path = data.display().to_string(),
        note = baked_note(dir, &path, name, bytes.len())?,
    );
    write_out(&format!("{name}.rs"), source.as_bytes()).map(drop)
}

/// The directory `dir` of the package being built, with cargo told to
/// rebuild when anything below it changes.
pub fn watch(dir: &str) -> Result<PathBuf, CrunchError> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| CrunchError("run from a build script".into()))?;
    let dir = Path::new(&manifest).join(dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    Ok(dir)
}

/// Writes `$OUT_DIR/FILE`; its path.
fn write_out(file: &str, bytes: &[u8]) -> Result<PathBuf, CrunchError> {
    let out =
        std::env::var("OUT_DIR").map_err(|_| CrunchError("run from a build script".into()))?;
    let path = Path::new(&out).join(file);
    std::fs::write(&path, bytes).map_err(|e| CrunchError(format!("{}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_sorted_typed_entries_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("css")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.path().join("css/site.css"), "h1{}").unwrap();
        let src = generate(dir.path(), "SITE").unwrap();
        let css = src.find("key: \"css/site.css\"").unwrap();
        let html = src.find("key: \"index.html\"").unwrap();
        assert!(css < html, "keys must be sorted:\n{src}");
        assert!(
            src.contains("text/css; charset=utf-8") && src.contains("text/html; charset=utf-8")
        );
        assert!(src.contains(&format!("{:?}", etag(b"<h1>hi</h1>"))));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        assert!(generate(dir.path(), "SITE")
            .unwrap_err()
            .0
            .contains("symbolic links"));
    }

    #[test]
    fn the_digest_is_what_sha256sum_gives_and_no_path_leaks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/x y.txt"), "spaced").unwrap();
        std::fs::write(dir.path().join("a.html"), "<p>a</p>").unwrap();
        std::fs::write(dir.path().join("B.css"), "").unwrap();
        let (digest, files) = dir_digest(dir.path()).unwrap();
        assert_eq!(files, 3);
        let shell = std::process::Command::new("sh")
            .arg("-c")
            .arg("find . -type f -printf '%P\\n' | LC_ALL=C sort | tr '\\n' '\\0' | xargs -0 sha256sum | sha256sum")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let shell = String::from_utf8(shell.stdout).unwrap();
        assert_eq!(shell.split(' ').next().unwrap(), digest);
        let inside = baked_note("site", dir.path(), "SITE", 14).unwrap();
        assert!(
            inside.contains(&format!("SITE={digest} files=3 bytes=14 dir=site")),
            "{inside}"
        );
        let outside = baked_note("/home/me/secret/tls", dir.path(), "CERTS", 0).unwrap();
        assert!(
            outside.contains("dir=tls\")") && !outside.contains("/home"),
            "{outside}"
        );
        let missing = baked_note("none", &dir.path().join("none"), "X", 0).unwrap();
        assert!(missing.contains("files=0"), "{missing}");
    }

    #[test]
    fn etags_change_with_content() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"a"), etag(b"a"));
        assert!(etag(b"").starts_with('"') && etag(b"").ends_with('"'));
    }

    #[test]
    fn bakes_bytes_into_out_dir_as_a_static() {
        let out = tempfile::tempdir().unwrap();
        // Only this test sets OUT_DIR (cargo sets CARGO_MANIFEST_DIR).
        std::env::set_var("OUT_DIR", out.path());
        bake_bytes("src", "BLOB", b"\x00bytes\xff").unwrap();
        assert_eq!(
            std::fs::read(out.path().join("BLOB.bin")).unwrap(),
            b"\x00bytes\xff"
        );
        let source = std::fs::read_to_string(out.path().join("BLOB.rs")).unwrap();
        assert!(
            source.contains("pub static BLOB: &[u8] = include_bytes!("),
            "{source}"
        );
        assert!(source.contains(&format!(
            "{:?}",
            out.path().join("BLOB.bin").display().to_string()
        )));
        assert!(
            bake_bytes("no-such-dir", "X", b"").is_ok(),
            "a missing directory is cargo's to watch"
        );
    }
}
