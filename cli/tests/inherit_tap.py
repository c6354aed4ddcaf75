#!/usr/bin/env python3
"""Opens an existing tap the way a parent such as Jitsu would, then runs a
tender on it: inherit_tap.py TAP FLAGS PROGRAM ARGS...

FLAGS is "plain" (IFF_TAP | IFF_NO_PI) or "vnet:N" (and IFF_VNET_HDR, with
a virtio-net header of N bytes). The open descriptor is left inheritable
and "fd:@" in ARGS becomes "fd:<its number>"; then PROGRAM replaces this
process (same pid), so the tender inherits the tap open.
"""
import fcntl
import os
import struct
import sys

TUNSETIFF = 0x400454CA
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def main():
    tap, mode, program, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[3:]
    flags = IFF_TAP | IFF_NO_PI
    header_len = None
    if mode.startswith("vnet:"):
        flags |= IFF_VNET_HDR
        header_len = int(mode[len("vnet:"):])
    elif mode != "plain":
        sys.exit(f"unknown mode {mode!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), flags))
    if header_len is not None:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", header_len))
    os.set_inheritable(fd, True)
    os.execv(program, [a.replace("fd:@", f"fd:{fd}") for a in args])


main()
