//! `lamina store`, the real binary on real image files: format, put from a
//! file and from stdin, ls, get, rm, fsck, and the errors for a missing
//! key, a damaged value and a file that is not a store.

mod common;

use common::{lamina, run_lamina};
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

fn image_arg(image: &Path) -> &str {
    image.to_str().unwrap()
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Runs `lamina store put IMAGE KEY` with `value` on stdin.
fn put_stdin(image: &Path, key: &str, value: &[u8]) -> Output {
    let mut child = lamina()
        .args(["store", "put", image_arg(image), key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn format_put_ls_get_rm_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let img = image_arg(&image);
    ok(run_lamina(&["store", "format", img, "--size", "8M"]));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 << 20);

    // A 3 MiB value from a file (several extents), a small one from stdin.
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let big_file = dir.path().join("big.bin");
    std::fs::write(&big_file, &big).unwrap();
    ok(run_lamina(&[
        "store",
        "put",
        img,
        "data/big",
        big_file.to_str().unwrap(),
    ]));
    ok(put_stdin(&image, "/data/small", b"hello\n"));
    ok(put_stdin(&image, "other", b""));

    let listing = stdout(&ok(run_lamina(&["store", "ls", img])));
    assert_eq!(
        listing,
        format!("{}\tdata/big\n6\tdata/small\n0\tother\n", big.len())
    );
    let listing = stdout(&ok(run_lamina(&["store", "ls", img, "data/s"])));
    assert_eq!(listing, "6\tdata/small\n");

    let got = ok(run_lamina(&["store", "get", img, "data/small"]));
    assert_eq!(got.stdout, b"hello\n");
    let out_file = dir.path().join("out.bin");
    ok(run_lamina(&[
        "store",
        "get",
        img,
        "data/big",
        "-o",
        out_file.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(&out_file).unwrap(), big);

    // rm is all or none.
    let refused = run_lamina(&["store", "rm", img, "other", "missing"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("missing: no such key"));
    ok(run_lamina(&["store", "get", img, "other"]));
    ok(run_lamina(&["store", "rm", img, "other", "data/small"]));
    assert_eq!(
        stdout(&ok(run_lamina(&["store", "ls", img]))),
        format!("{}\tdata/big\n", big.len())
    );

    let report = stdout(&ok(run_lamina(&["store", "fsck", img])));
    assert!(report.contains("1 keys"), "{report}");
    assert!(report.ends_with("clean\n"), "{report}");
}

#[test]
fn fsck_and_get_report_a_damaged_value() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let img = image_arg(&image);
    ok(run_lamina(&["store", "format", img, "--size", "1M"]));
    let value = vec![0x5au8; 10_000];
    let file = dir.path().join("v");
    std::fs::write(&file, &value).unwrap();
    ok(run_lamina(&[
        "store",
        "put",
        img,
        "k",
        file.to_str().unwrap(),
    ]));
    ok(run_lamina(&[
        "store",
        "put",
        img,
        "later",
        file.to_str().unwrap(),
    ]));
    // Flip one bit of the first value's data (a run of 0x5a bytes).
    let mut bytes = std::fs::read(&image).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w.iter().all(|&b| b == 0x5a))
        .unwrap();
    bytes[at + 10] ^= 1;
    std::fs::write(&image, &bytes).unwrap();

    let get = run_lamina(&["store", "get", img, "k"]);
    assert_eq!(get.status.code(), Some(1));
    assert!(get.stdout.is_empty(), "no wrong bytes are printed");
    let fsck = run_lamina(&["store", "fsck", img]);
    assert_eq!(fsck.status.code(), Some(1));
    assert!(stdout(&fsck).contains("damaged: k:"), "{}", stdout(&fsck));
    assert!(!stdout(&fsck).contains("damaged: later"));
}

#[test]
fn bad_images_and_keys_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("not-a-store.img");
    std::fs::write(&image, vec![7u8; 1 << 20]).unwrap();
    let img = image_arg(&image);
    let ls = run_lamina(&["store", "ls", img]);
    assert_eq!(ls.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ls.stderr).contains("not a lamina store"));
    // A FIFO blocked the opening until a writer came; a directory failed
    // with a bare I/O error.
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in [&fifo, dir.path()] {
        let refused = run_lamina(&["store", "ls", path.to_str().unwrap()]);
        assert_eq!(refused.status.code(), Some(1));
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("not a regular file"), "{said}");
    }
    // Nor is either an image or a recording.
    for command in [&["inspect"][..], &["trace", "-o", "/dev/null"]] {
        let refused = run_lamina(&[command, &[fifo.to_str().unwrap()]].concat());
        assert_eq!(refused.status.code(), Some(1), "{command:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("not a regular file"), "{command:?}: {said}");
    }
    let missing = run_lamina(&["store", "fsck", "/nonexistent/disk.img"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open"));
    let odd = run_lamina(&["store", "format", img, "--size", "1000"]);
    assert_eq!(odd.status.code(), Some(2), "a bad size is a usage error");
    ok(run_lamina(&["store", "format", img]));
    // An endless value is read no further than the image's size.
    let endless = run_lamina(&["store", "put", img, "k", "/dev/zero"]);
    assert_eq!(endless.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&endless.stderr)
        .contains("/dev/zero: more than the 1048576 bytes of"));
    let bad_key = run_lamina(&["store", "get", img, "../x"]);
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("invalid key"));
    let absent = run_lamina(&["store", "get", img, "x"]);
    assert!(String::from_utf8_lossy(&absent.stderr).contains("x: no such key"));
    // An image of format version 1 (its superblocks' checksum at 80 over
    // bytes 0..80) is refused, naming the version.
    let mut bytes = std::fs::read(&image).unwrap();
    for slot in 0..2 {
        let sb = &mut bytes[slot * 4096..slot * 4096 + 88];
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = lamina_store::format::crc32c(&sb[..80]);
        sb[80..84].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&image, bytes).unwrap();
    let old = run_lamina(&["store", "ls", img]);
    assert_eq!(old.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&old.stderr)
            .contains("store format version 1 is not supported (this build reads version 2)"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    // An image another process writes (a unikernel's tender holds its
    // flock(2)) is neither read nor written, nor emptied by a format.
    let holder = lamina_test_support::disk_lock::DiskLock::exclusive(&image);
    for args in [
        &["store", "ls", img][..],
        &["store", "put", img, "k", "/dev/null"],
        &["store", "format", img, "--size", "4096"],
    ] {
        let refused = run_lamina(args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains("in use by another process"),
            "{args:?}: {said}"
        );
    }
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1 << 20);
    drop(holder);
    // Released, it is read again (and refused for its version).
    let again = run_lamina(&["store", "ls", img]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("store format version 1"));
}
