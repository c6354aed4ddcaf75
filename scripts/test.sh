#!/usr/bin/env bash
# Runs every check CI runs: set-up, formatting, lints, then the whole test
# suite (unit tests, the unix target's device tests, and integration tests
# that drive the real `lamina` binary against real clients), and ends with a
# summary: tests run, failed, and skipped with why.
#
# A test that cannot run here (no /dev/kvm, not root, a peer program not
# installed) records a skip; under CI=true or LAMINA_REQUIRE_ALL=1 it fails
# instead, so that only the Solo5 compatibility tests (whose images nothing
# committed builds) can be skipped there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase's heading says when it began: CI has 30 minutes in all.
# CI builds from nothing, once: incremental compilation's caches only cost
# it time there (a developer's reruns keep them).
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
phase() { echo "== $1 (at $((SECONDS / 60)) min $((SECONDS % 60)) s)"; }
# The Rust components the lints need first; the rest of the set-up
# (Debian packages, speedscope, the nightly toolchain and cargo-fuzz:
# minutes of downloading and unpacking on a fresh machine) runs while the
# code is linted and built, which needs none of it, and the tests wait
# for it.
scripts/setup.sh --rust-components
setup_log=$(mktemp)
trap 'rm -f "$setup_log"' EXIT
scripts/setup.sh >"$setup_log" 2>&1 &
setup_pid=$!
phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Guest code compiles only for a unikernel target: lint it as one too, as
# `lamina build` compiles it (guest::flags: `--cfg lamina_guest` for every
# crate, the target's feature of the `lamina` crate, `lamina_target` for the
# applications). The applications see spt and hvt alike (one runtime with
# two ABIs), so hvt lints only the crates with code of its own.
guest_crates="-p lamina-metal -p lamina-solo5 -p lamina-virtio -p hello -p echo -p website -p dns -p selftest -p conformance -p resolve -p fetch -p disk -p storeload -p kv"
for target in spt hvt virtio; do
  phase "cargo clippy (guest code, $target)"
  crates=$guest_crates
  case $target in
    hvt) crates="-p lamina-metal -p lamina-solo5 -p selftest" ;;
    spt) crates=${crates/-p lamina-virtio/} ;;
    virtio) crates=${crates/-p lamina-solo5/} ;;
  esac
  # shellcheck disable=SC2086
  RUSTFLAGS="--cfg lamina_guest" cargo clippy --quiet --target x86_64-unknown-linux-gnu \
    --target-dir target/clippy-guest --config 'profile.dev.panic="abort"' \
    --features "lamina/$target" $([ "$target" = virtio ] || echo "--features lamina-solo5/$target") \
    $crates -- -D warnings --cfg "lamina_target=\"$target\""
done
phase "cargo test"
# Every test binary runs even after a failure, so the summary lists all.
test_log=$(mktemp)
LAMINA_SKIP_LOG=$(mktemp)
export LAMINA_SKIP_LOG
trap 'rm -f "$test_log" "$LAMINA_SKIP_LOG"' EXIT
# The lamina command's integration tests take most of the time, much of it
# waiting on guests and peers: they run in two streams at once, each also
# printing into a log of its own, shown whole when both are done (so that
# their lines do not interleave). Stream A takes the test files named below
# and then the fuzz smoke; B every other test file (a new one joins B by
# itself), the unit tests and the doc tests. From a clean clone here (two
# cores) A took 11 min 48 s and then the fuzz smoke 2 min 27 s, B 12 min
# 11 s, 18 min 1 s in all with the lints and the build (25 min 8 s before
# the unikernel targets shared one build of the libraries).
stream_a="https network dns reproducible trace unix oci size tls_dev_cert store disk_image usernet_boot"
set +e
cargo test --workspace --no-run 2>&1 | tee "$test_log"
build_status=${PIPESTATUS[0]}
phase "waiting for the set-up"
wait "$setup_pid"
setup_status=$?
cat "$setup_log"
rm -f "$setup_log"
if [ "$setup_status" -ne 0 ]; then
  echo "== FAILED: scripts/setup.sh exited with $setup_status"
  exit "$setup_status"
fi
# Both streams select test targets by name across the whole workspace, so
# that cargo resolves features as the build below did and rebuilds nothing
# (`-p lamina-cli` or `--exclude` resolved them otherwise: over 3 minutes of
# recompiling). A name selects that test file in every crate that has one.
all_tests=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(" ".join(sorted({t["name"] for p in packages for t in p["targets"] if "test" in t["kind"]})))')
# The binaries with unit tests, by name: an explicit --bins would also run
# those marked `test = false` (the example servers, which never end).
tested_bins=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(" ".join("--bin " + t["name"] for p in packages for t in p["targets"]
               if "bin" in t["kind"] and t.get("test", True)))')
a_args=() b_args=()
for name in $all_tests; do
  if [[ " $stream_a " == *" $name "* ]]; then a_args+=(--test "$name"); else b_args+=(--test "$name"); fi
done
phase "cargo test: two streams"
log_a=$(mktemp) log_b=$(mktemp)
trap 'rm -f "$test_log" "$LAMINA_SKIP_LOG" "$log_a" "$log_b"' EXIT
{
  cargo test --workspace --no-fail-fast "${a_args[@]}"
  a=$?
  # The fuzz smoke: every fuzz target briefly on its committed corpus (at
  # most 2 s each after an unoptimised build, 60 s where an optimised one
  # took 150; longer runs by hand, see fuzz/README.md).
  phase "fuzz smoke"
  FUZZ_PROFILE=dev fuzz/run.sh all 1000000 2
  fuzz=$?
  phase "stream A done"
  [ "$a" -eq 0 ] || exit "$a"
  exit "$fuzz"
} >"$log_a" 2>&1 &
stream_a_pid=$!
{
  # shellcheck disable=SC2086
  cargo test --workspace --no-fail-fast --lib $tested_bins "${b_args[@]}"
  targets=$?
  cargo test --workspace --no-fail-fast --doc
  doc=$?
  phase "stream B done"
  [ "$targets" -eq 0 ] && [ "$doc" -eq 0 ]
} >"$log_b" 2>&1
status_b=$?
wait "$stream_a_pid"
status_a=$?
cat "$log_a" "$log_b" | tee -a "$test_log"
status=$build_status
for s in $status_a $status_b; do
  if [ "$s" -ne 0 ]; then status=$s; fi
done
set -e

# libtest's "test result: ok. 5 passed; 1 failed; 0 ignored; ..." lines.
read -r passed failed ignored < <(awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed/) p += $i
      if ($(i + 1) ~ /^failed/) f += $i
      if ($(i + 1) ~ /^ignored/) g += $i
    }
  }
  END { print p + 0, f + 0, g + 0 }' "$test_log")
skipped=$(grep -c '^SKIPPED' "$LAMINA_SKIP_LOG" || true)
not_applicable=$(grep -c '^NOT-APPLICABLE' "$LAMINA_SKIP_LOG" || true)

phase "summary"
echo "tests run: $((passed + failed)), passed: $passed (skips included), failed: $failed, ignored: $ignored"
if ((failed)); then
  echo "failed:"
  # "Running tests/network.rs (target/debug/deps/network-HASH)" names the
  # binary (network) of the "test NAME ... FAILED" lines that follow.
  awk '/^ *Running / { binary = $NF; gsub(/[()]/, "", binary)
                       sub(/.*\//, "", binary); sub(/-[0-9a-f]+$/, "", binary) }
       /^test .* \.\.\. FAILED$/ { print "  " binary ": " $2 }' "$test_log" | sort -u
fi
echo "skipped: $skipped (a test that cannot run; under CI only Solo5's may)"
{ grep '^SKIPPED' "$LAMINA_SKIP_LOG" || true; } | sort | sed 's/^/  /'
echo "not applicable here: $not_applicable (nothing missing: the host lacks what they test)"
{ grep '^NOT-APPLICABLE' "$LAMINA_SKIP_LOG" || true; } | sort | sed 's/^/  /'
if ((status != 0)); then
  echo "== FAILED (cargo test or the fuzz smoke exited with $status)"
  exit "$status"
fi

phase "all tests passed"
