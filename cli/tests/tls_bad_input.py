#!/usr/bin/env python3
"""Bad TLS input against an HTTPS server on 127.0.0.1:PORT, then checks it
still serves: garbage instead of a ClientHello, every truncation of a real
ClientHello (sent, then the write side closed), oversized record headers, a
client that stalls mid-handshake (the server must close it after its
handshake timeout), and N concurrent half-open handshakes while curl makes a
normal request.

usage: tls_bad_input.py PORT CA_FILE HALF_OPEN
Prints one line per check; exit status 1 on the first failure.
"""
import asyncio, collections, os, socket, ssl, subprocess, sys, time

from tls_script import client_hello, fail, raise_fd_limit

port, ca_file, half_open = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
raise_fd_limit()


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def seconds_until_closed(s, limit):
    """Reads (an alert, say) until the server closes the connection; the
    seconds that took, or None if it was still open after `limit`."""
    start = time.monotonic()
    s.settimeout(0.5)
    while time.monotonic() - start < limit:
        try:
            if not s.recv(4096):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


def https_status(timeout):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), "--cacert", ca_file,
         "--resolve", f"localhost:{port}:127.0.0.1",
         "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{port}/"],
        capture_output=True, text=True)
    return out.stdout


hello = client_hello(ssl.create_default_context(cafile=ca_file))
print(f"ClientHello: {len(hello)} bytes", flush=True)

# Garbage, and plain HTTP, where a ClientHello should be: the server closes
# (after an alert or not) well before its handshake timeout.
for name, junk in [("random bytes", os.urandom(3000)),
                   ("plain HTTP", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                   ("a handshake record of zeros", b"\x16\x03\x01\x00\x40" + bytes(64)),
                   ("an alert first", b"\x15\x03\x03\x00\x02\x02\x28")]:
    s = connect()
    s.sendall(junk)
    took = seconds_until_closed(s, 5)
    s.close()
    if took is None:
        fail(f"{name}: the server kept the connection open")
    print(f"{name}: closed after {took:.2f}s", flush=True)

# Oversized record headers: lengths past 2^14 (+2048 for ciphertext).
for length in [0xFFFF, 2**14 + 2049]:
    s = connect()
    s.sendall(b"\x16\x03\x03" + length.to_bytes(2, "big") + os.urandom(1000))
    took = seconds_until_closed(s, 5)
    s.close()
    if took is None:
        fail(f"record length {length}: the server kept the connection open")
    print(f"record length {length}: closed after {took:.2f}s", flush=True)

# Every truncation of the ClientHello, the write side closed after it: the
# server must close each (end of stream mid-handshake), 100 at a time.
cut = list(range(1, len(hello)))
for first in range(0, len(cut), 100):
    batch = []
    for n in cut[first:first + 100]:
        s = connect()
        s.sendall(hello[:n])
        s.shutdown(socket.SHUT_WR)
        batch.append((n, s))
    for n, s in batch:
        took = seconds_until_closed(s, 15)
        s.close()
        if took is None:
            fail(f"ClientHello cut to {n} bytes: still open after 15s")
print(f"every truncation (1..{len(hello) - 1} bytes) sent and closed", flush=True)

# A client that sends half a ClientHello and stalls: closed by the server's
# handshake timeout (10 s).
s = connect()
s.sendall(hello[:len(hello) // 2])
took = seconds_until_closed(s, 20)
s.close()
if took is None or not 9.0 <= took <= 15.0:
    fail(f"a stalled handshake was closed after {took} s, not about 10 s")
print(f"stalled handshake: closed after {took:.2f}s", flush=True)

# Many concurrent half-open handshakes (opened at once, well within the
# handshake timeout), then a normal client while they are all held.
async def half_open_handshakes():
    async def open_one():
        for attempt in range(5):
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 10)
                writer.write(hello[:len(hello) // 2])
                await writer.drain()
                return reader, writer
            except (OSError, asyncio.TimeoutError) as e:
                error = e
        raise error

    start = time.monotonic()
    conns = await asyncio.gather(*[open_one() for _ in range(half_open)])
    opened = time.monotonic() - start
    start = time.monotonic()
    status = await asyncio.to_thread(https_status, 10)
    took = time.monotonic() - start
    # Which were still open when curl was answered: none may have been
    # closed yet (the handshake timeout is 10 s).
    open_after_curl = sum(1 for reader, _ in conns if not reader.at_eof())
    print(f"{half_open} half-open handshakes opened in {opened:.1f}s; curl meanwhile: "
          f"{status} in {took:.2f}s; {open_after_curl} still open after it", flush=True)
    if status != "200" or took > 5:
        fail(f"curl beside {half_open} half-open handshakes: {status!r} after {took:.2f}s")
    if opened + took > 9:
        fail(f"opening them took {opened:.1f}s: not all held at once")

    # How the server ended each, and when: "eof" (a FIN: its handshake
    # timeout, or a handshake dropped for a new client at
    # --max-connections after its task read what the client sent),
    # "reset" (an RST: one dropped with the client's bytes still unread,
    # as a BSD socket closed with unread data does), or None if it was
    # still open at the deadline. The deadline allows for a SYN the
    # unikernel dropped at a full accept queue (a loaded host): the
    # user-mode gateway's smoltcp sends it again about every 0.7 s three
    # times, then at doubling intervals up to 10 s, so on a host busy for
    # a while a connection may be accepted a minute late and closed 10 s
    # after that. (A CI run closed 1,811 of 2,000 by 37 s, none in the 23 s
    # after, and failed at a 60 s deadline.)
    deadline = time.monotonic() + 120

    async def closed_by_server(reader):
        try:
            while await asyncio.wait_for(reader.read(4096), max(deadline - time.monotonic(), 0)):
                pass
            return "eof", time.monotonic()
        except ConnectionResetError:
            return "reset", time.monotonic()
        except (OSError, asyncio.TimeoutError):
            return None, None

    ends = await asyncio.gather(*[closed_by_server(r) for r, _ in conns])
    for _, writer in conns:
        writer.close()
    how = [h for h, _ in ends]
    eof, reset = how.count("eof"), how.count("reset")
    last = max((t for _, t in ends if t is not None), default=start) - start
    print(f"closed by the server: {eof + reset}/{half_open} ({eof} with a FIN, {reset} with a reset), "
          f"the last {last:.1f}s after curl", flush=True)
    # When they closed, in 10 s steps after curl: a slow host shows as a
    # long tail, a lost close as a gap before the deadline.
    steps = collections.Counter(int((t - start) // 10) for _, t in ends if t is not None)
    print("closed per 10 s after curl: " + ", ".join(f"{10 * k}-{10 * k + 10}s: {n}" for k, n in sorted(steps.items())),
          flush=True)
    if eof + reset != half_open:
        fail("some half-open handshakes were never closed")

asyncio.run(half_open_handshakes())

status = https_status(10)
if status != "200":
    fail(f"HTTPS after all that: {status!r}")
print("still serving HTTPS", flush=True)
