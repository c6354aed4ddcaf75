#!/usr/bin/env python3
"""Storage benchmarks (issue 15). Block part: 4 KiB sequential and random
reads and writes by a unikernel (tests/guests/disk, `--mode=bench`) on
spt and hvt, against fio on the same backing file from the host, printed as
ratios of the medians of --runs.

Both go through the host's page cache, which is warmed first: the guest's
tender uses buffered pread64/pwrite64 on the file, and fio runs the same
way (ioengine=psync, invalidate=0, no fsync), one request at a time. The
guest times its own loop with its monotonic clock (boot excluded); fio
reports its job's IOPS. The file is filled with random bytes first.

usage: bench/store.py [--runs N] [--ops N] [--mib M] [--dir DIR] [--targets spt,hvt]
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile

from netns import REL, ROOT, image

PATTERNS = {"seq-read": "read", "seq-write": "write", "rand-read": "randread", "rand-write": "randwrite"}
IO = 4096


def guest_iops(target, disk, path, pattern, ops, size):
    out = subprocess.run([os.path.join(REL, f"lamina-{target}"), "--mem=64", f"--block:storage={path}",
                          "--block-sector-size:storage=4096", disk, "--mode=bench", f"--pattern={pattern}",
                          f"--bytes={size}", f"--io={IO}", f"--ops={ops}"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
    m = re.search(r"disk bench \S+: (\d+) ops of \d+ bytes in (\d+) ns", out)
    if not m:
        sys.exit(f"{target} {pattern}: no result in:\n{out}")
    return int(m.group(1)) / (int(m.group(2)) / 1e9)


def fio_iops(path, pattern, ops, size):
    out = subprocess.run(["fio", "--name=block", f"--filename={path}", f"--rw={PATTERNS[pattern]}", f"--bs={IO}",
                          f"--size={size}", f"--io_size={ops * IO}", "--ioengine=psync", "--invalidate=0",
                          "--randrepeat=1", "--output-format=json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
    job = json.loads(out)["jobs"][0]
    return job["read" if "read" in PATTERNS[pattern] else "write"]["iops"]


def block(args):
    size = args.mib << 20
    targets = args.targets.split(",")
    disks = {t: image(t, "tests/guests/disk") for t in targets}
    with tempfile.NamedTemporaryFile(dir=args.dir, prefix="lamina-store-bench-") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
        with open(f.name, "rb") as warm:
            while warm.read(1 << 20):
                pass
        print(f"block: {IO}-byte transfers, {args.ops} per run, over {args.mib} MiB of {f.name}; "
              f"medians of {args.runs} runs (IOPS; MB/s = IOPS x {IO} / 1e6)")
        for pattern in PATTERNS:
            results = {name: [] for name in ["fio"] + targets}
            for _ in range(args.runs):  # alternating, so drift hits all alike
                results["fio"].append(fio_iops(f.name, pattern, args.ops, size))
                for t in targets:
                    results[t].append(guest_iops(t, disks[t], f.name, pattern, args.ops, size))
            fio = statistics.median(results["fio"])
            line = [f"{pattern:10} fio {fio:9.0f} IOPS ({fio * IO / 1e6:6.1f} MB/s)"]
            for t in targets:
                m = statistics.median(results[t])
                line.append(f"{t} {m:9.0f} IOPS ({m * IO / 1e6:6.1f} MB/s) = {m / fio:.2f}x fio")
                print(f"  {t} {pattern} runs: {' '.join(f'{x:.0f}' for x in results[t])}", file=sys.stderr)
            print("  " + "; ".join(line))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--mib", type=int, default=256, help="bytes of the backing file the transfers cover")
    ap.add_argument("--dir", default="/var/tmp", help="where the backing file goes (a real disk, not tmpfs)")
    ap.add_argument("--targets", default="spt,hvt")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli", "-p", "lamina-spt", "-p", "lamina-hvt"],
                   cwd=ROOT, check=True)
    block(args)


if __name__ == "__main__":
    main()
