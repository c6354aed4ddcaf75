#!/usr/bin/env python3
"""dnspython against the DNS example (cli/tests/dns.rs runs this).

    dns_client.py SERVER PORT ZONE_DIR REFUSED_SOURCE IDLE_TIMEOUT MAX_CONNECTIONS

Checks, printing one line each and exiting non-zero if any failed:
- pipelined TCP: many queries written at once on one connection, every
  answer read back on it (matched by ID: the server may answer out of order);
- zone transfers: AXFR of every zone equals the zone file as dnspython reads
  it; AXFR from REFUSED_SOURCE (an address not allowed) is refused;
- TCP limits: a silent connection is closed after IDLE_TIMEOUT seconds (the
  server's --idle-timeout), one past MAX_CONNECTIONS (--max-connections) at
  once while the others are served;
- opcodes, EDNS (BADVERS, unknown options, the DO bit) and the question's
  case kept;
- malformed queries over UDP and TCP (every truncation of a valid query,
  compression loops and forward pointers, oversized names and labels, counts
  that lie, random bytes): each gets FORMERR or no answer, never a crash;
  afterwards the server still answers.
"""

import os
import random
import socket
import struct
import sys
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone

SERVER, PORT, ZONE_DIR, REFUSED_SOURCE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
IDLE_TIMEOUT, MAX_CONNECTIONS = float(sys.argv[5]), int(sys.argv[6])
# Generous: a SYN or datagram lost to a guest emulated under load (QEMU's
# TCG) is sent again after 1 and 3 seconds; silence the checks expect is
# waited for with shorter limits of its own.
TIMEOUT = 10.0
failures = []


def check(what, ok, detail=""):
    detail = str(detail).replace("\n", " | ")[:600]
    print(("ok:   " if ok else "FAIL: ") + what + ("" if ok else f" ({detail})"), flush=True)
    if not ok:
        failures.append(what)


def udp(message, timeout=TIMEOUT):
    return dns.query.udp(message, SERVER, port=PORT, timeout=timeout)


def query(name, rdtype="A", **kwargs):
    return dns.message.make_query(name, rdtype, **kwargs)


def still_answers(when):
    try:
        r = udp(query("www.example.com"))
        tcp = dns.query.tcp(query("www.example.com"), SERVER, port=PORT, timeout=TIMEOUT)
        check(
            f"still answers over UDP and TCP {when}",
            r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1
            and tcp.rcode() == dns.rcode.NOERROR and len(tcp.answer) == 1,
            f"{r.rcode()} {tcp.rcode()}",
        )
    except Exception as e:  # noqa: BLE001 - any failure to answer is the finding
        check(f"still answers over UDP and TCP {when}", False, repr(e))


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_framed(sock):
    (length,) = struct.unpack("!H", read_exact(sock, 2))
    return read_exact(sock, length)


def framed(wire):
    return struct.pack("!H", len(wire)) + wire


# --- Pipelined TCP ---------------------------------------------------------

def pipelined():
    names = [
        ("www.example.com", "A", dns.rcode.NOERROR),
        ("nosuch.example.com", "A", dns.rcode.NXDOMAIN),
        ("chain.example.com", "A", dns.rcode.NOERROR),
        ("big.example.com", "A", dns.rcode.NOERROR),
        ("www.example.net", "A", dns.rcode.REFUSED),
        ("_sip._tcp.example.com", "SRV", dns.rcode.NOERROR),
        ("10.2.0.192.in-addr.arpa", "PTR", dns.rcode.NOERROR),
    ]
    queries = {}
    batch = b""
    for i in range(140):
        name, rdtype, rcode = names[i % len(names)]
        q = query(name, rdtype)
        q.id = 1000 + i
        queries[q.id] = (q, rcode)
        batch += framed(q.to_wire())
    with socket.create_connection((SERVER, PORT), timeout=TIMEOUT) as sock:
        sock.sendall(batch)
        seen = {}
        try:
            while len(seen) < len(queries):
                wire = read_framed(sock)
                r = dns.message.from_wire(wire)
                q, rcode = queries[r.id]
                if not q.is_response(r) or r.rcode() != rcode:
                    check(f"pipelined answer {r.id}", False, r.to_text())
                seen[r.id] = r
        except Exception as e:  # noqa: BLE001
            check("pipelined TCP queries", False, f"{len(seen)} answers, then {e!r}")
            return
    big = [r for r in seen.values() if r.question[0].name.to_text() == "big.example.com."]
    check(
        f"{len(queries)} pipelined queries on one TCP connection all answered",
        len(seen) == len(queries) and all(len(r.answer[0]) == 40 for r in big),
    )


# --- TCP limits ------------------------------------------------------------

def closed_within(sock, limit):
    """Whether the server closes `sock` (end of stream or reset) within `limit` s."""
    sock.settimeout(limit)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def tcp_limits():
    silent = socket.create_connection((SERVER, PORT), timeout=TIMEOUT)
    half = socket.create_connection((SERVER, PORT), timeout=TIMEOUT)
    half.sendall(framed(query("www.example.com").to_wire())[:7])
    started = time.monotonic()
    closed = closed_within(silent, IDLE_TIMEOUT + 3) and closed_within(half, 3)
    took = time.monotonic() - started
    check(f"silent and half-sent connections closed after the idle timeout ({took:.1f} s)",
          closed and took >= IDLE_TIMEOUT - 0.5, f"closed: {closed}")
    silent.close()
    half.close()

    held = []
    try:
        for i in range(MAX_CONNECTIONS):
            sock = socket.create_connection((SERVER, PORT), timeout=TIMEOUT)
            held.append(sock)
            q = query("www.example.com")
            sock.sendall(framed(q.to_wire()))
            r = dns.message.from_wire(read_framed(sock))
            if not q.is_response(r):
                raise AssertionError(f"connection {i}: {r}")
        extra = socket.create_connection((SERVER, PORT), timeout=TIMEOUT)
        over = closed_within(extra, 2)
        extra.close()
        # The ones held are still served.
        q = query("example.com", "MX")
        held[0].sendall(framed(q.to_wire()))
        served = q.is_response(dns.message.from_wire(read_framed(held[0])))
        check(f"{MAX_CONNECTIONS} connections served, one more closed at once",
              over and served, f"closed: {over}, served: {served}")
    except Exception as e:  # noqa: BLE001
        check(f"{MAX_CONNECTIONS} connections served, one more closed at once", False, repr(e))
    for sock in held:
        sock.close()
    time.sleep(0.2)  # the server sees them go


# --- Zone transfers --------------------------------------------------------

def transfers():
    for file in sorted(os.listdir(ZONE_DIR)):
        if not file.endswith(".zone"):
            continue
        origin = file[: -len(".zone")] + "."
        expected = dns.zone.from_file(os.path.join(ZONE_DIR, file), origin, relativize=False)
        try:
            got = dns.zone.Zone(origin, relativize=False)
            dns.query.inbound_xfr(SERVER, got, port=PORT, timeout=TIMEOUT, lifetime=30)
            same = got == expected
            detail = ""
            if not same:
                want = {n.to_text() for n in expected.nodes}
                have = {n.to_text() for n in got.nodes}
                detail = f"missing {sorted(want - have)}, extra {sorted(have - want)}"
            check(f"AXFR of {origin} equals the zone file", same, detail)
        except Exception as e:  # noqa: BLE001
            check(f"AXFR of {origin} equals the zone file", False, repr(e))
    # From an address not allowed: REFUSED.
    q = query("example.com", "AXFR")
    try:
        with socket.create_connection((SERVER, PORT), timeout=TIMEOUT,
                                      source_address=(REFUSED_SOURCE, 0)) as sock:
            sock.sendall(framed(q.to_wire()))
            r = dns.message.from_wire(read_framed(sock))
        check("AXFR from an address not allowed is REFUSED", r.rcode() == dns.rcode.REFUSED
              and not r.answer, r.to_text())
    except Exception as e:  # noqa: BLE001
        check("AXFR from an address not allowed is REFUSED", False, repr(e))
    # Over UDP, never a transfer.
    r = udp(query("example.com", "AXFR"))
    check("AXFR over UDP is not answered with the zone", not r.answer or r.flags & dns.flags.TC,
          r.to_text())


# --- Opcodes, EDNS, case ---------------------------------------------------

def protocol():
    q = query("www.example.com")
    q.set_opcode(dns.opcode.STATUS)
    r = udp(q)
    check("an unknown opcode gets NOTIMP", r.rcode() == dns.rcode.NOTIMP, r.to_text())

    q = query("www.example.com", use_edns=1)
    r = udp(q)
    check("EDNS version 1 gets BADVERS", r.rcode() == dns.rcode.BADVERS and r.edns == 0,
          r.to_text())

    q = query("www.example.com", use_edns=0,
              options=[dns.edns.GenericOption(65001, b"lamina")], payload=4096)
    r = udp(q)
    check("an unknown EDNS option is ignored",
          r.rcode() == dns.rcode.NOERROR and r.edns == 0 and len(r.answer) == 1, r.to_text())

    q = query("www.example.com", want_dnssec=True)
    r = udp(q)
    check("the DO bit is echoed", r.ednsflags & dns.flags.DO != 0, r.to_text())
    q = query("www.example.com", use_edns=0)
    r = udp(q)
    check("no DO bit when not asked", r.edns == 0 and r.ednsflags & dns.flags.DO == 0,
          r.to_text())

    q = query("www.example.com", use_edns=False)
    r = udp(q)
    check("no OPT in answer to a query without one", r.edns == -1 and len(r.answer) == 1,
          r.to_text())

    mixed = "wWw.ExAmPle.COM."
    r = udp(query(mixed))
    labels = r.question[0].name.labels if r.question else ()
    check("the question's case is kept", labels == (b"wWw", b"ExAmPle", b"COM", b""),
          r.to_text())
    check("a mixed-case name is found", len(r.answer) == 1 and r.rcode() == dns.rcode.NOERROR,
          r.to_text())

    q = query("www.example.com")
    wire = bytearray(q.to_wire())
    wire[2] |= 0x80  # QR: a response, not a query
    check("a message with QR set gets no answer", raw_udp(bytes(wire), 0.5) is None)


# --- Malformed queries -----------------------------------------------------

def raw_udp(wire, timeout=TIMEOUT):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (SERVER, PORT))
        try:
            return sock.recv(65535)
        except socket.timeout:
            return None


def header(ident, flags=0x0000, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def malformed_cases():
    """(name, bytes) of queries no server may answer with anything but
    FORMERR (or silence). The first two bytes are the ID."""
    valid = query("www.example.com", "A", use_edns=0).to_wire()
    question_tail = struct.pack("!HH", 1, 1)
    cases = [(f"truncated to {n} bytes", valid[:n]) for n in range(2, len(valid))]
    cases += [
        ("a pointer to itself", header(1) + b"\xc0\x0c" + question_tail),
        ("a loop of two pointers", header(1) + b"\x03www\xc0\x12" + b"\xc0\x0c" + question_tail),
        ("a loop through a later name", header(1, ar=1) + b"\x03www\xc0\x16" + question_tail
         + b"\x03ns1\xc0\x0c" + b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
        ("a forward pointer", header(1) + b"\xc0\x12" + question_tail + b"\x03www\x00"),
        ("a pointer past the end", header(1) + b"\x03www\xc3\xff" + question_tail),
        ("a 300-byte name", header(1) + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f"
         + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x3f" + b"e" * 63 + b"\x00" + question_tail),
        ("a 64-byte label (reserved label type)", header(1) + b"\x40" + b"a" * 64 + b"\x00"
         + question_tail),
        ("an extended label type", header(1) + b"\x41\x03www\x00" + question_tail),
        ("a name without its end", header(1) + b"\x03www\x07example"),
        ("no question though one is counted", header(1)),
        ("two questions counted, one there", header(1, qd=2) + b"\x03www\x00" + question_tail),
        ("an answer counted, none there", header(1, an=1) + b"\x03www\x00" + question_tail),
        ("100 additional records counted, none there",
         header(1, ar=100) + b"\x03www\x00" + question_tail),
        ("an OPT record cut short", header(1, ar=1) + b"\x03www\x00" + question_tail
         + b"\x00\x00\x29\x04"),
        ("two OPT records", header(1, ar=2) + b"\x03www\x00" + question_tail
         + (b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00") * 2),
        ("an OPT with a lying rdata length", header(1, ar=1) + b"\x03www\x00" + question_tail
         + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x40\x00\x01"),
    ]
    return cases


def formerr_or_nothing(ident, answer):
    """None if `answer` is acceptable for a malformed query with `ident`, else why not."""
    if answer is None:
        return None
    if len(answer) < 12:
        return f"a {len(answer)}-byte answer"
    got_id, flags = struct.unpack("!HH", answer[:4])
    if ident is not None and got_id != ident:
        return f"ID {got_id}, not {ident}"
    if not flags & 0x8000:
        return "QR not set"
    if flags & 0x000F != dns.rcode.FORMERR:
        return f"rcode {flags & 0xF}, not FORMERR"
    return None


def with_id(wire, ident):
    return struct.pack("!H", ident) + wire[2:] if len(wire) >= 2 else wire


def malformed_udp():
    cases = malformed_cases()
    bad = []
    # Sent one after another, each with an ID of its own; answers collected
    # for a while after: silence is allowed, so no case waits alone.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent = {}
        for i, (what, wire) in enumerate(cases):
            ident = 20000 + i
            sent[ident] = what
            sock.sendto(with_id(wire, ident), (SERVER, PORT))
            time.sleep(0.002)
        for n in range(12):  # too short for an ID (and a header): silence
            sock.sendto(b"\x12" * n, (SERVER, PORT))
        sock.settimeout(1.0)
        answered = 0
        while True:
            try:
                answer = sock.recv(65535)
            except socket.timeout:
                break
            answered += 1
            ident = struct.unpack("!H", answer[:2])[0] if len(answer) >= 2 else None
            if ident not in sent:
                bad.append(f"an answer with ID {ident} to none of the queries")
                continue
            why = formerr_or_nothing(ident, answer)
            if why:
                bad.append(f"{sent[ident]}: {why}")
    check(f"{len(cases)} malformed UDP queries get FORMERR or nothing ({answered} answered)",
          not bad, "; ".join(bad))


def malformed_tcp():
    bad = []
    for i, (what, wire) in enumerate(malformed_cases()[::3]):
        ident = 30000 + i
        try:
            with socket.create_connection((SERVER, PORT), timeout=TIMEOUT) as sock:
                sock.sendall(framed(with_id(wire, ident)))
                sock.settimeout(1.0)
                try:
                    answer = read_framed(sock)
                except (socket.timeout, EOFError, ConnectionResetError):
                    answer = None
                why = formerr_or_nothing(ident, answer)
                if why:
                    bad.append(f"{what}: {why}")
        except OSError as e:
            bad.append(f"{what}: {e!r}")
    check("malformed TCP queries get FORMERR or nothing", not bad, "; ".join(bad))


def random_bytes():
    rng = random.Random(1234)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(500):
            sock.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600))),
                        (SERVER, PORT))
            time.sleep(0.001)
        # Random messages that start as a query: a header of a query.
        for _ in range(500):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 100)))
            sock.sendto(header(rng.getrandbits(16), qd=rng.randrange(0, 3),
                               ar=rng.randrange(0, 2)) + body, (SERVER, PORT))
            time.sleep(0.001)
    # Over TCP: random bytes where a length and a message belong, then a
    # reset in the middle of a message.
    for n in range(5):
        try:
            with socket.create_connection((SERVER, PORT), timeout=TIMEOUT) as sock:
                sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000))))
        except OSError:
            pass
    with socket.create_connection((SERVER, PORT), timeout=TIMEOUT) as sock:
        sock.sendall(framed(query("www.example.com").to_wire())[:9])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    check("1000 random datagrams and 6 bad TCP connections sent", True)


def main():
    still_answers("at the start")
    pipelined()
    tcp_limits()
    transfers()
    protocol()
    malformed_udp()
    still_answers("after malformed UDP queries")
    malformed_tcp()
    random_bytes()
    still_answers("after random bytes")
    if failures:
        print(f"{len(failures)} checks failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)


main()
