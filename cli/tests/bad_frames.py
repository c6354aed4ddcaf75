#!/usr/bin/env python3
"""Sends malformed Ethernet frames out of a tap (inside a test's network
namespace) at the unikernel on the other side: truncated headers, wrong
checksums, bad IP and TCP options, overlapping fragments, random frames.

usage: bad_frames.py TAP GUEST_IP
"""
import os, random, socket, struct, sys

tap, guest = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((tap, 0))
src_mac = open(f"/sys/class/net/{tap}/address").read().strip()
src = bytes.fromhex(src_mac.replace(":", ""))
dst = b"\xff" * 6  # broadcast reaches the guest whatever its MAC
host_ip = socket.inet_aton(".".join(guest.split(".")[:3] + ["1"]))
guest_ip = socket.inet_aton(guest)
rng = random.Random(1234)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(payload, proto=6, ident=1, frag=0, bad_checksum=False, options=b""):
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, 4 * ihl + len(payload), ident, frag, 64, proto, 0,
                         host_ip, guest_ip) + options
    c = csum(header) ^ (0x1234 if bad_checksum else 0)
    header = header[:10] + struct.pack("!H", c) + header[12:]
    return header + payload


def tcp(flags=0x02, options=b"", bad_checksum=False, dport=7):
    off = 5 + len(options) // 4
    seg = struct.pack("!HHIIBBHHH", 40000, dport, rng.getrandbits(32), 0, off << 4, flags, 65535, 0, 0) + options
    pseudo = host_ip + guest_ip + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg) ^ (0x4321 if bad_checksum else 0)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def frame(payload, ethertype=0x0800):
    return dst + src + struct.pack("!H", ethertype) + payload


sent = 0


def send(f):
    global sent
    try:
        s.send(f)
        sent += 1
    except OSError:
        pass  # a frame the kernel refuses (too short) counts as not sent


good_syn = ipv4(tcp())
for n in range(1, len(good_syn) + 14):  # every truncation of a SYN frame
    send(frame(good_syn)[:n])
send(frame(ipv4(tcp(), bad_checksum=True)))  # wrong IP checksum
send(frame(ipv4(tcp(bad_checksum=True))))  # wrong TCP checksum
send(frame(ipv4(tcp(options=b"\x02\x04\x00"  # MSS option cut short
                                 + b"\x00"))))
send(frame(ipv4(tcp(options=b"\x03\x00\x00\x00"))))  # window scale with length 0
send(frame(ipv4(tcp(options=b"\xff" * 40))))  # header longer than allowed
send(frame(ipv4(tcp(), options=b"\x44\x02\x00\x00")))  # IP option with a bad length
send(frame(ipv4(b"\x00" * 8, proto=17)[:20] + b"\x00\x07\x00\x07\x00\x02\x00\x00"))  # UDP length 2
# Overlapping fragments of one datagram (a teardrop).
payload = tcp() + b"A" * 64
send(frame(ipv4(payload[:48], ident=7, frag=0x2000)))
send(frame(ipv4(payload[16:], ident=7, frag=2)))  # offset 16 overlaps the first
send(frame(ipv4(payload[8:24], ident=7, frag=0x2000 | 1)))
# ARP with garbage, ICMP with a wrong checksum, an IPv6 frame cut short.
send(frame(os.urandom(28), 0x0806))
send(frame(ipv4(b"\x08\x00\xde\xad" + b"x" * 20, proto=1)))
send(frame(b"\x60\x00\x00\x00\x00\x20\x3a\xff" + os.urandom(20), 0x86DD))
# Random frames of every size.
for _ in range(2000):
    send(frame(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 1500))), rng.choice([0x0800, 0x86DD, 0x0806, 0x1234])))
print(f"sent {sent} malformed frames")
