//! Reproducible builds (issue 17, part 2): the same commit checked out
//! twice, in two directories, built one after the other, each with its own
//! target directory, gives byte-identical release images of hello and of
//! the website (its baked site, the HTTP library and the TCP/IP stack
//! included); `lamina verify` says "identical" for the image and names the
//! section of a flipped byte.
//!
//! The checkouts are of HEAD (`git clone --shared`): what is committed is
//! what is checked. The release builds from scratch take a few minutes on
//! a loaded two-core machine.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn git(args: &[&str], dir: &Path) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A clean checkout of `commit` at `dir`.
fn checkout(commit: &str, dir: &Path) {
    git(
        &[
            "clone",
            "-q",
            "--shared",
            "--no-checkout",
            root().to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        &root(),
    );
    git(&["checkout", "-q", "--detach", commit], dir);
}

/// `lamina ARGS` as that checkout's Lamina, with its own target directory.
fn lamina_in(checkout: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(args)
        .env("LAMINA_HOME", checkout)
        .env("CARGO_TARGET_DIR", checkout.join("target"))
        .env_remove("LAMINA_TLS_DIR")
        .env_remove("LAMINA_TLS_CA")
        .env_remove("LAMINA_DNS_ZONES")
        .current_dir(checkout)
        .output()
        .expect("cannot start lamina");
    eprintln!(
        "--- lamina {args:?} in {}: {:?}\n{}{}",
        checkout.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `lamina build --release -t spt APP` in `checkout`: the image.
fn build(checkout: &Path, app: &str) -> PathBuf {
    let dir = checkout.join("examples").join(app);
    let output = lamina_in(
        checkout,
        &["build", "--release", "-t", "spt", dir.to_str().unwrap()],
    );
    assert!(
        output.status.success(),
        "the build in {} failed",
        checkout.display()
    );
    checkout
        .join("target/lamina-spt/x86_64-unknown-linux-gnu/release")
        .join(app)
}

/// The file offset of the `.text` section's first byte, from readelf's
/// view of the ELF header and program headers: the first PT_LOAD's.
fn text_offset(bytes: &[u8]) -> usize {
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    assert_eq!(
        bytes[phoff..phoff + 4],
        1u32.to_le_bytes(),
        "the first segment is text"
    );
    u64::from_le_bytes(bytes[phoff + 8..phoff + 16].try_into().unwrap()) as usize
}

#[test]
fn two_checkouts_build_identical_images_and_verify_says_so() {
    let commit = git(&["rev-parse", "HEAD"], &root());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("checkout-b"));
    checkout(&commit, &a);
    checkout(&commit, &b);
    let mut images = Vec::new();
    for app in ["hello", "website"] {
        let (first, second) = (build(&a, app), build(&b, app));
        let (one, two) = (
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
        );
        assert!(
            one == two,
            "{app} built in {} and {} differs ({} and {} bytes); compare them with cmp -l",
            a.display(),
            b.display(),
            one.len(),
            two.len()
        );
        // Neither checkout's path is in the image.
        for place in [&a, &b] {
            let path = place.display().to_string();
            assert!(
                !one.windows(path.len()).any(|w| w == path.as_bytes()),
                "{path} in {app}'s image"
            );
        }
        images.push(one);
    }
    let one = images.swap_remove(0);

    // verify from checkout b (its target directory holds the rebuild).
    let image = dir.path().join("hello.img");
    std::fs::write(&image, &one).unwrap();
    let target_dir = b.join("target");
    let verify = |image: &Path| {
        lamina_in(
            &b,
            &[
                "verify",
                image.to_str().unwrap(),
                b.to_str().unwrap(),
                "--target-dir",
                target_dir.to_str().unwrap(),
            ],
        )
    };
    let same = verify(&image);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).starts_with("identical"));

    // One byte of .text flipped: verify names the section.
    let mut changed = one.clone();
    let at = text_offset(&one) + 0x10;
    changed[at] ^= 0x01;
    let flipped = dir.path().join("flipped.img");
    std::fs::write(&flipped, &changed).unwrap();
    let different = verify(&flipped);
    let said = String::from_utf8_lossy(&different.stdout);
    assert_eq!(different.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("offset {at:#x}")) && said.contains("section .text at +0x10"),
        "{said}"
    );

    // A checkout at another commit is refused, saying which.
    let parent = git(&["rev-parse", "HEAD~1"], &root());
    git(&["checkout", "-q", "--detach", &parent], &b);
    let refused = verify(&image);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&commit));
}
