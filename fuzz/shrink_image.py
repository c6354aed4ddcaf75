#!/usr/bin/env python3
"""Makes fuzz seeds from a built unikernel image:

- fuzz/corpus/elf_image/NAME: the same ELF header, program headers and
  notes, each loadable segment cut to its first 64 file bytes (its memory
  size unchanged) and no section headers, so that the seed stays about a
  kilobyte and still passes the loader's checks;
- fuzz/corpus/manifest/NAME: the image's Solo5 manifest (MFT1 payload),
  if it has one.

    fuzz/shrink_image.py IMAGE NAME
"""
import os
import struct
import sys

PT_LOAD, PT_NOTE = 1, 4
KEEP = 64


def shrink(image: bytes) -> bytes:
    phoff, = struct.unpack_from("<Q", image, 32)
    phnum, = struct.unpack_from("<H", image, 56)
    headers = [list(struct.unpack_from("<IIQQQQQQ", image, phoff + 56 * i)) for i in range(phnum)]
    out = bytearray(image[:64])
    struct.pack_into("<Q", out, 32, 64)  # program headers right after
    struct.pack_into("<Q", out, 40, 0)  # no section headers
    struct.pack_into("<HH", out, 60, 0, 0)
    at = 64 + 56 * phnum
    out += bytes(56 * phnum)
    for h in headers:
        p_type, _, offset, _, _, filesz, memsz, _ = h
        if p_type == PT_LOAD and filesz:
            filesz = min(filesz, KEEP)
        elif p_type != PT_NOTE:
            continue
        at = (at + 7) & ~7
        out += bytes(at - len(out))
        out += image[offset:offset + filesz]
        h[2], h[5] = at, filesz
        at += filesz
    for i, h in enumerate(headers):
        struct.pack_into("<IIQQQQQQ", out, 64 + 56 * i, *h)
    return bytes(out)


def manifest(image: bytes) -> bytes:
    """The MFT1 note's payload: after a 20-byte header, aligned to 8."""
    phoff, = struct.unpack_from("<Q", image, 32)
    phnum, = struct.unpack_from("<H", image, 56)
    for i in range(phnum):
        p_type, _, offset, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", image, phoff + 56 * i)
        namesz, descsz, n_type = struct.unpack_from("<III", image, offset)
        if p_type == PT_NOTE and image[offset + 12:offset + 18] == b"Solo5\0" and n_type == 0x3154464D:
            return image[offset + 24:offset + 20 + descsz]
    return None  # a virtio image has none


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    with open(sys.argv[1], "rb") as f:
        image = f.read()
    for target, seed in (("elf_image", shrink(image)), ("manifest", manifest(image))):
        if seed is None:
            continue
        os.makedirs(os.path.join(here, "corpus", target), exist_ok=True)
        with open(os.path.join(here, "corpus", target, sys.argv[2]), "wb") as f:
            f.write(seed)
