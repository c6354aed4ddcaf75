#!/usr/bin/env python3
"""Boot benchmark of the virtio target (issue 6): QEMU -M microvm spawn ->
first console line -> exit for hello, against the same hello on lamina-hvt,
as a ratio in one run (medians of --runs, runs alternating).

QEMU runs with software emulation (tcg): on these KVM-PVM machines QEMU's
ordinary KVM guest cannot run SSE (see PVM.md).

usage: bench/virtio.py [--runs N]
"""
import argparse, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")


def image(target):
    out = subprocess.run([os.path.join(REL, "lamina"), "build", "--release", "-t", target, "hello"], cwd=ROOT,
                         check=True, stderr=subprocess.PIPE, text=True).stderr
    return out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]


def timed(cmd, ok_status):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    proc.stdout.readline()
    t1 = time.perf_counter()
    proc.stdout.read()
    status = proc.wait()
    t2 = time.perf_counter()
    if status != ok_status:
        sys.exit(f"{cmd[0]} exited {status}")
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli", "-p", "lamina-hvt"], cwd=ROOT, check=True)
    qemu = ["qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", "64", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-device", "isa-debug-exit",
            "-kernel", image("virtio"), "-append", "--times=1"]
    hvt = [os.path.join(REL, "lamina-hvt"), "--mem=64", image("hvt"), "--times=1"]
    runs = {"microvm": [], "hvt": []}
    for _ in range(args.runs):
        runs["microvm"].append(timed(qemu, 3))  # status 0 through isa-debug-exit is 3
        runs["hvt"].append(timed(hvt, 0))
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
    print(f"hello: spawn -> first line -> exit, median of {args.runs} runs")
    for kind, (first, done) in med.items():
        print(f"  {kind:8} first line {first:8.2f} ms   exit {done:8.2f} ms")
    print(f"  ratio microvm / hvt: {med['microvm'][0] / med['hvt'][0]:.1f}x to first line, "
          f"{med['microvm'][1] / med['hvt'][1]:.1f}x to exit")


if __name__ == "__main__":
    main()
