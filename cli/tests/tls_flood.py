#!/usr/bin/env python3
"""More HTTPS connections than a website unikernel's memory holds, then
checks it still serves: IDLE complete TLS 1.3 handshakes kept open and
silent, then HALF_OPEN connections that send half a ClientHello and stall
(all at once), then a new client must get its page, and every 10th idle
connection must still answer a GET.

usage: tls_flood.py PORT CA_FILE IDLE HALF_OPEN
Prints one line per step; exit status 1 on the first failure.
"""
import socket, ssl, subprocess, sys, time

from tls_script import client_hello, fail, raise_fd_limit

port, ca_file, idle, half_open = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
raise_fd_limit()
context = ssl.create_default_context(cafile=ca_file)
context.minimum_version = ssl.TLSVersion.TLSv1_3


def get(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return s.recv(64).startswith(b"HTTP/1.1 200")


start = time.monotonic()
conns = []
for i in range(idle):
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        conns.append(context.wrap_socket(raw, server_hostname="localhost"))
    except Exception as e:
        fail(f"idle connection {i + 1}: {type(e).__name__}: {e}")
print(f"{idle} idle TLS connections in {time.monotonic() - start:.1f} s", flush=True)

hello = client_hello(context)
stalled, refused = [], 0
for i in range(half_open):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(hello[:len(hello) // 2])
        stalled.append(s)
    except OSError:
        refused += 1
print(f"{len(stalled)} half-open handshakes ({refused} refused)", flush=True)
time.sleep(1)

out = subprocess.run(
    ["curl", "-sS", "--max-time", "20", "--cacert", ca_file, "--resolve", f"localhost:{port}:127.0.0.1",
     "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{port}/"],
    capture_output=True, text=True)
if out.stdout != "200":
    fail(f"a new client while the half-open ones are held: {out.stdout} {out.stderr.strip()}")
print("a new client: 200", flush=True)

answered = asked = 0
for s in conns[::10]:
    asked += 1
    try:
        s.settimeout(10)
        answered += get(s)
    except Exception:
        pass
if answered != asked:
    fail(f"only {answered} of {asked} idle connections answered")
print(f"idle connections answered: {answered}/{asked}", flush=True)
