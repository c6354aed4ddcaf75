//! The size report (issue 17, part 3): `lamina build --size` and `lamina
//! inspect --size` attribute a release image (LTO on, stripped) to crates
//! from the unstripped copy kept beside it (IMAGE.debug). The rows add up
//! to the image's loaded size, counted here from its program headers; the
//! bytes no symbol explains stay under a stated share; the baked files'
//! row is the size of the website's files; and IMAGE.debug loads exactly
//! the bytes IMAGE does.

mod common;

use common::*;
use std::path::Path;

/// The loadable segments of an ELF file: (vaddr, memsz, file bytes).
fn loads(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(0x20) as usize, u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&ph| bytes[ph..ph + 4] == 1u32.to_le_bytes())
        .map(|ph| {
            let (offset, filesz) = (u64_at(ph + 8) as usize, u64_at(ph + 32) as usize);
            (
                u64_at(ph + 16),
                u64_at(ph + 40),
                bytes[offset..offset + filesz].to_vec(),
            )
        })
        .collect()
}

fn has_symtab(path: &Path) -> bool {
    let output = std::process::Command::new("readelf")
        .arg("-S")
        .arg(path)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&output.stdout).contains(".symtab")
}

/// `lamina inspect --size --json IMAGE`: (rows, loaded size).
fn size_report(image: &Path) -> (Vec<serde_json::Value>, u64) {
    let output = run_lamina(&["inspect", "--size", "--json", image.to_str().unwrap()]);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("{report:#}");
    (
        report["rows"].as_array().unwrap().clone(),
        report["loaded"].as_u64().unwrap(),
    )
}

fn total(row: &serde_json::Value) -> u64 {
    let b = &row["bytes"];
    b["text"].as_u64().unwrap() + b["rodata"].as_u64().unwrap() + b["data"].as_u64().unwrap()
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["name"] == name)
}

/// At most this share of the loaded size may be bytes no symbol covers.
const UNATTRIBUTED_MAX_PERCENT: u64 = 30;

#[test]
fn the_size_report_adds_up_and_names_the_crates() {
    let image = image("spt", "hello");
    let debug = image.with_file_name("hello.debug");
    assert!(!has_symtab(&image), "the release image is stripped");
    assert!(has_symtab(&debug), "IMAGE.debug keeps the symbols");
    let (stripped, unstripped) = (
        std::fs::read(&image).unwrap(),
        std::fs::read(&debug).unwrap(),
    );
    assert_eq!(
        loads(&stripped),
        loads(&unstripped),
        "both load the same bytes"
    );

    let (rows, loaded) = size_report(&image);
    let from_headers: u64 = loads(&stripped).iter().map(|(_, memsz, _)| memsz).sum();
    assert_eq!(loaded, from_headers);
    assert_eq!(
        rows.iter().map(total).sum::<u64>(),
        loaded,
        "the rows add up"
    );
    for name in [
        "hello",
        "lamina_core",
        "lamina_metal",
        "lamina_solo5",
        "core",
    ] {
        let found = row(&rows, name).unwrap_or_else(|| panic!("no row for {name}"));
        assert!(total(found) > 0, "{name}");
    }
    assert_eq!(row(&rows, "hello").unwrap()["kind"], "application");
    assert_eq!(row(&rows, "lamina_core").unwrap()["kind"], "lamina");
    let unattributed = total(row(&rows, "unattributed (no symbol)").unwrap());
    assert!(
        unattributed * 100 <= loaded * UNATTRIBUTED_MAX_PERCENT,
        "{unattributed} of {loaded} bytes unattributed"
    );

    // lamina build --size prints the table.
    let output = run_lamina(&["build", "--release", "--size", "-t", "spt", "hello"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        table.contains("hello (application)") && table.contains("lamina_core (Lamina)"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "loaded size {loaded} bytes; rows sum to {loaded} bytes"
        )),
        "{table}"
    );
}

#[test]
fn baked_files_have_a_row_of_their_own() {
    let image = image("spt", "website");
    let (rows, loaded) = size_report(&image);
    assert_eq!(rows.iter().map(total).sum::<u64>(), loaded);
    let site: u64 = walk(&root().join("examples/website/site"));
    let baked = row(&rows, "baked files").expect("a baked row");
    // The site, and the certificates if tls/ held some when it was built.
    assert!(total(baked) >= site, "{baked} < {site}");
    assert_eq!(row(&rows, "website").unwrap()["kind"], "application");
    assert!(row(&rows, "lamina_http").is_some());
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
