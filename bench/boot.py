#!/usr/bin/env python3
"""Boot benchmarks of the unikernel targets (issue 3), each against a Linux
process measured in the same run.

1. spawn -> first console line -> exit of `hello --times=1` on spt and hvt,
   against a std Rust program printing the same line (medians of --runs).
2. stripped image size of hello for spt and hvt.
3. peak resident memory (ru_maxrss) of each tender running hello.
4. a compute loop inside the hvt and spt guests against the same loop in a
   host process (bench/compute_loop.rs): the cost of virtualisation on CPU
   work, which on KVM-PVM must be close to none.
5. hello spawn -> exit against Solo5's tenders (issue 11): lamina-hvt
   running Lamina's hello against solo5-hvt running Solo5's test_hello, and
   lamina-spt against solo5-spt likewise, medians of --runs with the
   commands taking turns; also lamina-hvt and lamina-spt running Solo5's
   own test_hello (the same image for both tenders). Each also with the
   tender's CPU time (user + system, from wait4), which other work on a
   shared host disturbs far less than the wall time. Solo5 is not part of
   this repository: build it by hand (./configure.sh && make) in the
   directory --solo5 names; without it this part is skipped, saying so.

usage: bench/boot.py [--runs N] [--solo5 DIR]
"""
import argparse, os, statistics, subprocess, sys, time

from netns import build_tenders, tender_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")


def sh(*args, **kw):
    return subprocess.run(args, cwd=ROOT, check=True, **kw)


def build():
    sh("cargo", "build", "--release", "-q", "-p", "lamina-cli", "-p", "lamina-bench-peers")
    build_tenders()
    images = {}
    for target in ("spt", "hvt"):
        for app in ("hello", "tests/guests/selftest"):
            out = sh(os.path.join(REL, "lamina"), "build", "--release", "-t", target, app,
                     stderr=subprocess.PIPE, text=True).stderr
            path = out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]
            images[(target, os.path.basename(app))] = path
    return images


def timed_run(cmd):
    """(first line, exit) in ms."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()
    t1 = time.perf_counter()
    proc.stdout.read()
    status = proc.wait()
    t2 = time.perf_counter()
    if status != 0:
        sys.exit(f"{cmd} failed with {status}")
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def spawn_to_exit(cmd):
    """(spawn -> exit, the child's CPU time: user + system) in ms, the
    output thrown away. On a shared host the wall time also holds waits
    for a CPU that other work has; the CPU time is the tender's own."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed with {proc.returncode}")
    return (t1 - t0) * 1e3, (usage.ru_utime + usage.ru_stime) * 1e3


def solo5_comparison(solo5, images, runs):
    """Part 5: hello spawn -> exit, Lamina's tenders against Solo5's."""
    print(f"hello spawn -> exit against Solo5's tenders, median of {runs} runs, taking turns per tender kind"
          f" (load average {os.getloadavg()[0]:.2f}; CPU: the tender's own time, user + system)")
    tenders = {t: os.path.join(solo5, "tenders", t, f"solo5-{t}") for t in ("hvt", "spt")}
    tests = {t: os.path.join(solo5, "tests", "test_hello", f"test_hello.{t}") for t in ("hvt", "spt")}
    missing = [p for p in list(tenders.values()) + list(tests.values()) if not os.access(p, os.R_OK)]
    if missing:
        print(f"  skipped: no Solo5 build at {solo5} ({', '.join(missing)} missing);"
              " build Solo5 there (./configure.sh && make) or pass --solo5 DIR")
        return
    # The same guest memory for every tender (Solo5's default is 512 MiB).
    cmds = {}
    for t in ("hvt", "spt"):
        ours = tender_path(t)
        cmds[f"lamina-{t} hello"] = [ours, "--mem=32", images[(t, "hello")], "--times=1"]
        cmds[f"solo5-{t} test_hello"] = [tenders[t], "--mem=32", tests[t]]
        cmds[f"lamina-{t} test_hello"] = [ours, "--mem=32", tests[t]]
    times = {name: [] for name in cmds}
    # One tender kind at a time, its three commands taking turns: an hvt run
    # leaves the kernel work of a VM's teardown behind, which must not land
    # on one of the spt commands more than on the others.
    for t in ("hvt", "spt"):
        group = {name: cmd for name, cmd in cmds.items() if name.split()[0].endswith(t)}
        for _ in range(runs):
            for name, cmd in group.items():
                times[name].append(spawn_to_exit(cmd))
    med = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    for t in ("hvt", "spt"):
        base, base_cpu = med[f"solo5-{t} test_hello"], cpu[f"solo5-{t} test_hello"]
        for name in (f"lamina-{t} hello", f"solo5-{t} test_hello", f"lamina-{t} test_hello"):
            print(f"  {name:22} {med[name]:7.2f} ms  {med[name] / base:5.2f}x solo5-{t}"
                  f"   CPU {cpu[name]:6.2f} ms  {cpu[name] / base_cpu:5.2f}x")
    goals = {"hvt": 0.3, "spt": 1.0}
    for t, goal in goals.items():
        ratio = med[f"lamina-{t} hello"] / med[f"solo5-{t} test_hello"]
        cpu_ratio = cpu[f"lamina-{t} hello"] / cpu[f"solo5-{t} test_hello"]
        verdict = "met" if ratio <= goal else "NOT met"
        print(f"  lamina-{t} / solo5-{t}: {ratio:.2f}x (goal <= {goal}x: {verdict}); CPU time {cpu_ratio:.2f}x")


def resident_kib(cmd):
    """Peak resident memory (VmHWM) of a tender running hello --times=2,
    read while it sleeps between the two lines."""
    proc = subprocess.Popen(cmd[:-1] + ["--times=2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()
    with open(f"/proc/{proc.pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    proc.wait()
    return hwm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--solo5", default=os.environ.get("LAMINA_SOLO5_SRC") or "/tmp/solo5/src",
                    help="a Solo5 source tree built by hand (default $LAMINA_SOLO5_SRC or /tmp/solo5/src)")
    ap.add_argument("--only-solo5", action="store_true",
                    help="run only the comparison with Solo5's tenders")
    args = ap.parse_args()
    images = build()
    if args.only_solo5:
        solo5_comparison(args.solo5, images, args.runs)
        return
    disk = "/tmp/lamina-bench-disk.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    cmds = {
        "linux": [os.path.join(REL, "std-hello")],
        "spt": [tender_path("spt"), "--mem=32", images[("spt", "hello")], "--times=1"],
        "hvt": [tender_path("hvt"), "--mem=32", images[("hvt", "hello")], "--times=1"],
    }
    results = {k: [] for k in cmds}
    for _ in range(args.runs):
        for kind, cmd in cmds.items():
            results[kind].append(timed_run(cmd))
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in results.items()}
    print(f"hello: spawn -> first line -> exit, median of {args.runs} runs")
    for kind, (first, done) in med.items():
        ratio = f"  ({first / med['linux'][0]:.2f}x / {done / med['linux'][1]:.2f}x the Linux process)" if kind != "linux" else ""
        print(f"  {kind:6} first line {first:7.2f} ms   exit {done:7.2f} ms{ratio}")
    print("peak resident memory of the tender running hello")
    for kind in ("spt", "hvt"):
        print(f"  lamina-{kind} {resident_kib(cmds[kind]):6d} KiB")

    print("stripped image size of hello (goal: under 64 KiB)")
    for target in ("spt", "hvt"):
        size = os.path.getsize(images[(target, "hello")])
        print(f"  {target:6} {size / 1024:6.1f} KiB")

    print("compute loop, 100M iterations, median of 5 (guest time / host time)")
    host = []
    guest = {"spt": [], "hvt": []}
    for _ in range(5):
        out = sh(os.path.join(REL, "std-compute"), "100000000", stdout=subprocess.PIPE, text=True).stdout
        host.append(int(out.split(" in ")[1].split()[0]))
        for target in guest:
            tender = tender_path(target)
            out = sh(tender, "--mem=32", f"--block:storage={disk}", images[(target, "selftest")],
                     "--test=compute", stdout=subprocess.PIPE, text=True).stdout
            guest[target].append(int(out.split(" in ")[1].split()[0]))
    h = statistics.median(host)
    print(f"  linux  {h / 1000:8.1f} ms (std-compute, built by rustc at opt-level 3)")
    for target, times in guest.items():
        g = statistics.median(times)
        print(f"  {target:6} {g / 1000:8.1f} ms  ratio {g / h:.3f}")
    # spt runs the image's own machine code as a plain Linux process: the
    # same instructions as in the VM, so hvt/spt is the cost of the VM alone.
    ratio = statistics.median(guest["hvt"]) / statistics.median(guest["spt"])
    print(f"  hvt / spt (identical code, VM versus plain process): {ratio:.3f}")
    solo5_comparison(args.solo5, images, args.runs)


if __name__ == "__main__":
    main()
