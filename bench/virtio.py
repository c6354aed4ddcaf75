#!/usr/bin/env python3
"""Benchmarks of the virtio target (issue 6), each against lamina-hvt in
the same run, as a ratio:

- boot: QEMU -M microvm (and -M q35, virtio-pci) spawn -> first console
  line -> exit for hello (medians of --runs, runs alternating);
- http (--http): the website over a tap through virtio-net, GET / with wrk
  from inside a network namespace the script makes (and removes), against
  the same website on hvt over a tap.

QEMU runs with software emulation (tcg): on these KVM-PVM machines QEMU's
ordinary KVM guest cannot run SSE (see PVM.md). The QEMU flags are those
`lamina run -t virtio` uses.

usage: bench/virtio.py [--runs N] [--http [--seconds S] [--connections C]]
"""
import argparse, os, statistics, subprocess, sys, time

from netns import REL, ROOT, build_tenders, delete, image as build_image, tap_namespace, tender_path


COMMON = ["-accel", "tcg", "-cpu", "max", "-nodefaults", "-no-user-config", "-display", "none",
          "-serial", "stdio", "-device", "isa-debug-exit"]
QEMU = ["qemu-system-x86_64", "-M", "microvm,acpi=off"] + COMMON + [
    "-global", "virtio-mmio.force-legacy=false", "-device", "virtio-rng-device"]
Q35 = ["qemu-system-x86_64", "-M", "q35"] + COMMON + [
    "-device", "virtio-rng-pci,disable-legacy=on,addr=0x1,romfile="]


def image(target, app="hello"):
    return build_image(target, app)


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
    ap.add_argument("--http", action="store_true", help="also the website over a tap, with wrk")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=10)
    args = ap.parse_args()
    build_tenders()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli"], cwd=ROOT, check=True)
    boot(args)
    if args.http:
        http(args)


def wrk(ns, url, args):
    out = subprocess.run(["ip", "netns", "exec", ns, "wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s",
                          "--latency", url], check=True, capture_output=True, text=True).stdout
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    p99 = next(l for l in out.splitlines() if l.strip().startswith("99%")).split()[1]
    errors = [l.strip() for l in out.splitlines() if "errors" in l or "Non-2xx" in l]
    return rps, p99, errors


def serve(kind, website, args):
    """Boots the website on `kind` over tap0 in a fresh namespace; returns wrk's figures."""
    ns = f"lamina-bv-{os.getpid()}"
    tap_namespace(ns, "10.214.0.1/24")
    guest_args = ["--ipv4=10.214.0.2/24"]
    if kind == "microvm":
        cmd = QEMU + ["-m", "64", "-netdev", "tap,id=net-service,ifname=tap0,script=no,downscript=no",
                      "-device", "virtio-net-device,netdev=net-service", "-kernel", website,
                      "-append", " ".join(["--net:service"] + guest_args)]
    else:
        cmd = [tender_path("hvt"), "--mem=64", "--net:service=tap0", website] + guest_args
    proc = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(300):
            code = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--max-time", "1", "http://10.214.0.2/"], capture_output=True, text=True).stdout
            if code == "200":
                break
            time.sleep(0.2)
        else:
            sys.exit(f"{kind}: the website did not answer")
        return wrk(ns, "http://10.214.0.2/", args)
    finally:
        proc.kill()
        proc.wait()
        delete(ns)


def http(args):
    results = {"microvm": serve("microvm", image("virtio", "website"), args),
               "hvt": serve("hvt", image("hvt", "website"), args)}
    print(f"website GET / over a tap, wrk -t2 -c{args.connections} -d{args.seconds}s")
    for kind, (rps, p99, errors) in results.items():
        print(f"  {kind:8} {rps:10.0f} requests/s   p99 {p99:>9}   {' '.join(errors)}")
    print(f"  ratio microvm / hvt: {results['microvm'][0] / results['hvt'][0]:.2f}x requests/s")


def boot(args):
    kernel = ["-m", "64", "-kernel", image("virtio"), "-append", "--times=1"]
    hvt = [tender_path("hvt"), "--mem=64", image("hvt"), "--times=1"]
    runs = {"microvm": [], "q35": [], "hvt": []}
    for _ in range(args.runs):
        runs["microvm"].append(timed(QEMU + kernel, 3))  # status 0 through isa-debug-exit is 3
        runs["q35"].append(timed(Q35 + kernel, 3))
        runs["hvt"].append(timed(hvt, 0))
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
    print(f"hello: spawn -> first line -> exit, median of {args.runs} runs")
    for kind, (first, done) in med.items():
        print(f"  {kind:8} first line {first:8.2f} ms   exit {done:8.2f} ms")
    for kind in ("microvm", "q35"):
        print(f"  ratio {kind} / hvt: {med[kind][0] / med['hvt'][0]:.1f}x to first line, "
              f"{med[kind][1] / med['hvt'][1]:.1f}x to exit")


if __name__ == "__main__":
    main()
