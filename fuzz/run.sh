#!/usr/bin/env bash
# Builds and runs Lamina's fuzz targets (cargo-fuzz, libFuzzer, nightly).
#
#   fuzz/run.sh TARGET|all EXECS [SECONDS]
#
# Runs each target for EXECS executions (at most SECONDS seconds each if
# given), starting from its committed corpus fuzz/corpus/TARGET (and its
# dictionary fuzz/dicts/TARGET.dict, if there is one). New inputs
# go to fuzz/target/corpus/TARGET (not committed; pass them to `cargo fuzz
# cmin` to grow the seeds), crashes to fuzz/artifacts/TARGET/. Ends with one
# line per target: executions done, and whether it crashed. Exits non-zero
# if any target crashed.
#
# Needs: the nightly toolchain and cargo-fuzz (scripts/setup.sh installs
# them). FUZZ_JOBS=N runs N targets at once (default 1); FUZZ_PROFILE=dev
# builds them unoptimised (see below); FUZZ_TIMEOUT=S reports an input as
# a hang after S seconds of wall time (default 10): a campaign at nice 19
# on a host whose CPUs others hold can stand still for a minute, and its
# inputs that take milliseconds were reported as hangs.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET|all EXECS [SECONDS]" >&2
  exit 2
fi
which=$1
execs=$2
seconds=${3:-0}
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^lamina-fuzz$')
if [ "$which" != all ]; then
  if ! grep -qx "$which" <<<"$targets"; then
    echo "$0: no fuzz target '$which'; the targets are:" $targets >&2
    exit 2
  fi
  targets=$which
fi

# Release code with debug assertions and overflow checks (what a
# `lamina build` without --release runs), under AddressSanitizer.
# FUZZ_PROFILE=dev builds unoptimised instead, in half the time, for short
# runs such as CI's smoke, where the build is most of the cost.
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
  build_flags=(--dev --debug-assertions)
  bin=target/x86_64-unknown-linux-gnu/debug
  # No debug information either (a sixth of the build's CPU time): a crash
  # is still named by function; reproduce it on a release build for lines.
  export CARGO_PROFILE_DEV_DEBUG=0
else
  build_flags=(-O --debug-assertions)
  bin=target/x86_64-unknown-linux-gnu/release
fi
# shellcheck disable=SC2086
cargo +nightly fuzz build "${build_flags[@]}" $([ "$which" = all ] || echo "$which")

run_one() {
  local target=$1
  local log="target/logs/$target.log"
  mkdir -p "target/corpus/$target" "corpus/$target" "artifacts/$target" target/logs
  local dict=()
  [ -f "dicts/$target.dict" ] && dict=(-dict="dicts/$target.dict")
  local status=0
  "$bin/$target" "${dict[@]}" -runs="$execs" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" \
    "target/corpus/$target" "corpus/$target" >"$log" 2>&1 || status=$?
  local done
  done=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ $status -eq 0 ]; then
    printf '%-15s %10s executions, no crash\n' "$target" "${done:-?}"
  else
    printf '%-15s %10s executions, FAILED (status %d): see fuzz/%s\n' \
      "$target" "${done:-?}" "$status" "$log"
    grep -m5 -E 'panicked|ERROR: |Test unit written' "$log" | sed 's/^/    /'
  fi
  return $status
}

jobs=${FUZZ_JOBS:-1}
failed=0
results=$(mktemp)
trap 'rm -f "$results"' EXIT
running=0
for target in $targets; do
  # `|| status=$?`: under set -e a failing run_one would end the subshell
  # before it recorded its status.
  (status=0; run_one "$target" >"$results.$target" || status=$?
   echo "$status" >"$results.$target.status") &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
echo "== fuzz: $execs executions per target${3:+, at most $seconds s each}"
for target in $targets; do
  cat "$results.$target"
  [ "$(cat "$results.$target.status")" = 0 ] || failed=1
  rm -f "$results.$target" "$results.$target.status"
done
exit $failed
