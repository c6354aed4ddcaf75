//! Zones from a directory of master files, baked for an image by a build
//! script.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::borrow::ToOwned;
use std::path::Path;

use super::text::{parse_name, read_zone, ReadError, Token};
use super::Zones;

/// Reads and checks every `*.zone` file of `dir` (not below it): one zone
/// per file, whose origin is the file name without `.zone`
/// (`example.com.zone` is the zone `example.com.`) and must own the SOA.
/// Errors name the file as `shown/<file name>` and the line.
pub fn read_dir(dir: &Path, shown: &str) -> Result<Zones, ReadError> {
    let whole = |message: String| ReadError {
        file: shown.to_owned(),
        line: 0,
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| whole(e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| whole(e.to_string()))?;
        let file_name = entry.file_name();
        let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".zone")) else {
            continue;
        };
        files.push((stem.to_owned(), entry.path()));
    }
    if files.is_empty() {
        return Err(whole(
            "no *.zone file (one per zone, named after its origin: example.com.zone)".into(),
        ));
    }
    files.sort();
    let mut zones = Vec::with_capacity(files.len());
    for (stem, path) in files {
        let file = format!("{shown}/{stem}.zone");
        let text = std::fs::read(&path).map_err(|e| ReadError {
            file: file.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        let token = Token {
            raw: [stem.as_bytes(), b"."].concat(),
            quoted: false,
            line: 0,
        };
        let origin = parse_name(&token, b"\x00").map_err(|f| ReadError {
            file: file.clone(),
            line: 0,
            message: format!("the file name gives the origin: {}", f.message),
        })?;
        zones.push(read_zone(&text, &file, &origin)?);
    }
    Zones::new(zones).map_err(|e| whole(e.to_string()))
}

/// For build scripts: reads and checks every `*.zone` file of `dir`
/// (relative to the package, see [`read_dir`]) and bakes them with
/// lamina-crunch into `$OUT_DIR/NAME.rs`, defining `static NAME: &[u8]`
/// for [`Zones::from_baked`]. A bad zone fails the build with
/// `dir/file.zone:line: why`.
///
/// ```no_run
/// // build.rs
/// lamina_dns::zone::bake("zones", "ZONES").expect("bad zone");
/// // main.rs
/// // include!(concat!(env!("OUT_DIR"), "/ZONES.rs"));
/// // let zones = lamina_dns::zone::Zones::from_baked(ZONES)?;
/// ```
pub fn bake(dir: &str, name: &str) -> Result<(), ReadError> {
    let whole = |message: String| ReadError {
        file: dir.to_owned(),
        line: 0,
        message,
    };
    let path = lamina_crunch::watch(dir).map_err(|e| whole(e.0))?;
    let zones = read_dir(&path, dir)?;
    lamina_crunch::bake_bytes(dir, name, &zones.to_baked()).map_err(|e| whole(e.0))
}
