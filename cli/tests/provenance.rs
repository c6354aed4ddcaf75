//! Provenance in every image (issue 17, part 1): `lamina build` records
//! how and from what an image was built, and `lamina inspect` reads it
//! back. The recorded facts are compared with what the tools say now:
//! `rustc -V`, `cargo -V`, `sha256sum Cargo.lock`, `git rev-parse HEAD`,
//! `git status --porcelain`, and each baked directory's digest with
//! `sha256sum` over its files. Malformed images are errors, not panics.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The first line `program ARGS` prints in the repository.
fn tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {args:?} failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// `sh -c SCRIPT` in `dir`: the first word it prints.
fn shell_word(script: &str, dir: &Path) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{script}");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// `lamina inspect --json IMAGE`, parsed.
fn inspect(image: &Path) -> serde_json::Value {
    let output = run_lamina(&["inspect", "--json", image.to_str().unwrap()]);
    assert!(output.status.success(), "lamina inspect failed");
    serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON")
}

fn field<'a>(report: &'a serde_json::Value, key: &str) -> &'a str {
    report["provenance"]
        .as_array()
        .expect("a provenance")
        .iter()
        .find(|pair| pair[0] == key)
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_else(|| panic!("no {key} in the provenance: {report}"))
}

#[test]
fn the_image_records_its_provenance() {
    let image = image("spt", "hello");
    let report = inspect(&image);
    eprintln!("{report:#}");
    assert_eq!(field(&report, "format"), "1");
    assert_eq!(field(&report, "rustc"), tool("rustc", &["-V"]));
    assert_eq!(field(&report, "cargo"), tool(env!("CARGO"), &["-V"]));
    assert_eq!(
        field(&report, "cargo_lock_sha256"),
        shell_word("sha256sum Cargo.lock", &root())
    );
    assert_eq!(
        field(&report, "commit"),
        tool("git", &["rev-parse", "HEAD"])
    );
    let dirty = !tool("git", &["status", "--porcelain"]).is_empty();
    assert_eq!(field(&report, "dirty"), dirty.to_string());
    assert_eq!(field(&report, "lamina"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&report, "app"), "hello");
    assert_eq!(field(&report, "package"), "examples/hello");
    assert_eq!(field(&report, "target"), "spt");
    assert_eq!(field(&report, "profile"), "release");
    // What elftool shows, and the layout.
    assert_eq!(report["abi"]["target"], "spt");
    assert_eq!(report["abi"]["version"], 2);
    assert!(report["manifest"].is_array());
    assert_eq!(report["sealed"], true);
    let segments = report["segments"].as_array().unwrap();
    let permissions: Vec<&str> = segments
        .iter()
        .map(|s| s["permissions"].as_str().unwrap())
        .collect();
    assert_eq!(permissions, ["R-X", "R--", "RW-"]);
    let text_sections = segments[0]["sections"].to_string();
    assert!(text_sections.contains(".text"), "{text_sections}");
    // No path of this machine in the image: the provenance records none,
    // and panic locations are remapped.
    let bytes = std::fs::read(&image).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for leak in [root().display().to_string(), format!("{home}/.cargo")] {
        assert!(
            !bytes.windows(leak.len()).any(|w| w == leak.as_bytes()),
            "the image contains the path {leak}"
        );
    }
}

#[test]
fn baked_directories_are_recorded_with_their_digest() {
    let image = image("spt", "website");
    let report = inspect(&image);
    let baked = report["baked"].as_array().expect("baked directories");
    let site = root().join("examples/website/site");
    let digest = shell_word(
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | tr '\\n' '\\0' | xargs -0 sha256sum | sha256sum",
        &site,
    );
    let files = shell_word("find . -type f | wc -l", &site);
    let bytes = shell_word(
        "find . -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'",
        &site,
    );
    let expected = format!("SITE={digest} files={files} bytes={bytes} dir=site");
    assert!(
        baked.iter().any(|b| b == expected.as_str()),
        "expected {expected} in {baked:?}"
    );
}

/// The hello image with every program header whose first note is
/// Lamina's turned into PT_NULL: what a Solo5 image looks like.
fn without_lamina_notes(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phnum) = (u64_at(0x20), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * 56;
        let offset = u64_at(ph + 8);
        if bytes[ph..ph + 4] == 4u32.to_le_bytes() && &bytes[offset + 12..offset + 18] == b"Lamina"
        {
            out[ph..ph + 4].copy_from_slice(&0u32.to_le_bytes());
        }
    }
    out
}

#[test]
fn a_solo5_image_is_described_from_its_solo5_notes() {
    let image = image("spt", "hello");
    let dir = tempfile::tempdir().unwrap();
    let solo5 = dir.path().join("solo5-like");
    std::fs::write(
        &solo5,
        without_lamina_notes(&std::fs::read(&image).unwrap()),
    )
    .unwrap();
    let report = inspect(&solo5);
    assert_eq!(report["abi"]["target"], "spt");
    assert!(report["manifest"].is_array());
    assert!(report["provenance"].is_null(), "{report}");
    assert!(report["lamina_features"].is_null(), "{report}");
    let text = run_lamina(&["inspect", solo5.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("provenance: none"), "{text}");
}

#[test]
fn malformed_images_are_errors_not_panics() {
    let image = image("spt", "hello");
    let bytes = std::fs::read(&image).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("a script".into(), b"#!/bin/sh\necho hi\n".to_vec()),
    ];
    for len in [10, 64, 200, 0x1000, bytes.len() / 2, bytes.len() - 1] {
        cases.push((format!("cut at {len}"), bytes[..len].to_vec()));
    }
    // A note whose size runs past its segment.
    let mut long_note = bytes.clone();
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(bytes[0x38..0x3a].try_into().unwrap()) as usize;
    let note = (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&ph| bytes[ph..ph + 4] == 4u32.to_le_bytes())
        .unwrap();
    let offset = u64::from_le_bytes(bytes[note + 8..note + 16].try_into().unwrap()) as usize;
    long_note[offset + 4..offset + 8].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    cases.push(("an oversized note".into(), long_note));
    for (what, contents) in cases {
        std::fs::write(&bad, contents).unwrap();
        let output = run_lamina(&["inspect", bad.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("lamina: ") && !stderr.contains("panicked"),
            "{what}: {stderr}"
        );
    }
}
