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
echo "== cargo test"
cargo test --workspace
echo "== all tests passed"
