#!/usr/bin/env bash
# Runs every check CI runs: set-up, formatting, lints, then the whole test
# suite (unit tests, the unix target's device tests, and integration tests
# that drive the real `lamina` binary against real clients).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Guest code compiles only for a unikernel target: lint it as one too.
for target in spt hvt virtio; do
  echo "== cargo clippy (guest code, $target)"
  RUSTFLAGS="--cfg lamina_target=\"$target\"" cargo clippy --quiet --target x86_64-unknown-linux-gnu \
    --target-dir "target/clippy-$target" --config 'profile.dev.panic="abort"' \
    -p lamina-solo5 -p lamina-virtio -p hello -p echo -p website -p selftest -- -D warnings
done
echo "== cargo test"
cargo test --workspace
echo "== all tests passed"
