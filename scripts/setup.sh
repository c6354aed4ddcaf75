#!/usr/bin/env bash
# Installs what Lamina's build and tests need on a fresh Debian machine:
# Debian packages (the real peers the tests talk to) and Rust components.
# Safe to run again: it installs only what is missing.
#
#   scripts/setup.sh                     everything
#   scripts/setup.sh --rust-components   only rustfmt and clippy
set -euo pipefail

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
[ "${1:-}" = --rust-components ] && exit 0

# command -> Debian package that provides it
declare -A PACKAGES=(
  [nc]=netcat-openbsd
  [ip]=iproute2
  [ping]=iputils-ping
  [curl]=curl
  [openssl]=openssl
  [dot]=graphviz
  [hyperfine]=hyperfine
  # bench/http.py's load generator.
  [wrk]=wrk
  [python3]=python3
  [dnsmasq]=dnsmasq-base
  [knotd]=knot
  [hping3]=hping3
  [chromium]=chromium
  [qemu-system-x86_64]=qemu-system-x86
  [grub-mkimage]=grub-common
  [dig]=bind9-dnsutils
  [kdig]=knot-dnsutils
  [nginx]=nginx
  [certutil]=libnss3-tools
  [testssl]=testssl.sh
  [strace]=strace
  [gdb]=gdb
  [fio]=fio
  [redis-server]=redis-server
  [redis-benchmark]=redis-tools
  [npm]=npm
  # `lamina oci`'s tests: the image read, copied and unpacked by the real tools.
  [skopeo]=skopeo
  [umoci]=umoci
)

missing=()
for cmd in "${!PACKAGES[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done

# GRUB's BIOS files (boot.img, the i386-pc modules) for `lamina build --disk`.
[ -f /usr/lib/grub/i386-pc/boot.img ] || missing+=(grub-pc-bin)

# dnspython, for the DNS tests' client (cli/tests/dns_client.py).
python3 -c 'import dns.message' >/dev/null 2>&1 || missing+=(python3-dnspython)

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# A python3 other than Debian's (pyenv, say) does not see Debian's dnspython.
if ! python3 -c 'import dns.message' >/dev/null 2>&1; then
  echo "setup: installing dnspython for $(command -v python3)"
  python3 -m pip install --quiet dnspython
fi

# speedscope, which the trace test serves to Chromium as an independent
# reader of `lamina trace`'s JSON (cli/tests/trace.rs).
SPEEDSCOPE="$HOME/.cache/lamina/speedscope"
if [ ! -f "$SPEEDSCOPE/node_modules/speedscope/dist/release/index.html" ]; then
  echo "setup: installing speedscope into $SPEEDSCOPE"
  mkdir -p "$SPEEDSCOPE"
  [ -f "$SPEEDSCOPE/package.json" ] || echo '{"private": true}' >"$SPEEDSCOPE/package.json"
  npm install --silent --prefix "$SPEEDSCOPE" speedscope
fi

# The fuzz smoke (fuzz/run.sh, run by scripts/test.sh): a nightly toolchain
# (libFuzzer needs its sanitizer flags) and cargo-fuzz.
if command -v rustup >/dev/null 2>&1; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
