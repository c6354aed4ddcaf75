//! What the spt and hvt tenders' Solo5 compatibility tests share (included
//! by path from their tests/solo5.rs): where Solo5's test images are, and
//! their output without the lines that change from run to run.
//!
//! The images come from a Solo5 build in /tmp/solo5/src (or
//! $LAMINA_SOLO5_SRC). Nothing of Solo5 is in this repository and CI does
//! not build it, so without the images the tests record what they skipped
//! (`lamina_test_support::skip_allowed`: the one skip CI allows).

use std::path::PathBuf;

/// Solo5's source tree with its tests built for `target` ("spt", "hvt").
pub fn solo5_src(target: &str) -> Option<PathBuf> {
    let src = PathBuf::from(
        std::env::var_os("LAMINA_SOLO5_SRC").unwrap_or_else(|| "/tmp/solo5/src".into()),
    );
    let probe = src.join(format!("tests/test_hello/test_hello.{target}"));
    if probe.exists() {
        Some(src)
    } else {
        // Nothing committed can build these images: the one skip that
        // does not fail under CI, still recorded for scripts/test.sh.
        lamina_test_support::skip_allowed(
            &format!("Solo5's {target} tests"),
            &format!(
                "no Solo5 test images at {} (build Solo5 there to run these)",
                probe.display()
            ),
        );
        None
    }
}

/// Output lines that differ between runs (measured times) left out.
pub fn stable(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.contains("Slept for") && !l.contains("Overhead of"))
        .map(str::to_string)
        .collect()
}

/// A zeroed 4 MiB disk file for Solo5's block test, unique to this test
/// process; the caller removes it.
pub fn scratch_disk(target: &str) -> PathBuf {
    let disk =
        std::env::temp_dir().join(format!("lamina-{target}-solo5-{}.img", std::process::id()));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    disk
}
