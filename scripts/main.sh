#!/usr/bin/env bash
# The main job: build the example website unikernel and boot it on the best
# target this machine supports, serving on 127.0.0.1 until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8080}"
HTTPS_PORT="${HTTPS_PORT:-8443}"
scripts/setup.sh
cargo build --release -q -p lamina-cli
LAMINA=target/release/lamina

if [ -d examples/website ]; then
  # HTTPS needs a certificate baked into the image. Bring your own in
  # examples/website/tls/ (NAME.crt + NAME.key, see the README); without one,
  # a development certificate from the local development CA is made here,
  # said out loud, and trusted only where that CA is.
  certs=examples/website/tls
  if ! ls "$certs"/*.crt >/dev/null 2>&1; then
    echo "main: no certificate in $certs/: making a development one (lamina tls dev-cert)"
    "$LAMINA" tls dev-cert localhost 127.0.0.1 --dir "$certs"
  fi
  ca=$("$LAMINA" tls dev-ca 2>/dev/null || true)
  echo "main: booting the website unikernel"
  echo "main:   open http://127.0.0.1:$PORT/"
  echo "main:   and  https://localhost:$HTTPS_PORT/   (curl --cacert ${ca:-CA.crt} https://localhost:$HTTPS_PORT/)"
  exec "$LAMINA" run --release --port "$PORT:80" --port "$HTTPS_PORT:443" website
fi
# The website arrives with a later issue; until then the main job is the echo
# unikernel, on the best target here (lamina picks hvt where /dev/kvm works,
# else spt) with user-mode networking on 127.0.0.1.
echo "main: the website example is not in this checkout yet; booting the echo unikernel instead"
echo "main: talk to it with:  nc 127.0.0.1 $PORT"
exec "$LAMINA" run --release --port "$PORT:7" echo
