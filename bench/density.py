#!/usr/bin/env python3
"""Density benchmark (issue 13, part 5): how many idle website unikernels
(examples/website) one host holds, and what each costs, on spt and hvt,
against the same website as a Linux process measured in the same run.

Each unikernel runs as `lamina run --port` runs it: a lamina-usernet
process (the user-mode network, listening on its own 127.0.0.1 port)
beside the tender, joined by a SOCK_SEQPACKET socketpair (the tender's
--net:service=fd:N). The benchmark starts the two itself, without
`lamina run`, so that starting thousands is quick and `lamina` costs
nothing. The peer is the website built for the unix target (one Linux
process per instance, listening on its own port): the same application,
the same smoltcp-free std networking a Linux site would use, so the ratio
is what the unikernel's isolation (tender, guest memory, user-mode network)
costs over a plain process.

Instances start in steps of --step up to --count for each --target, all
kept running; after each step, once they have settled, it prints:
- the drop in MemAvailable since the start, per instance (everything: the
  processes, their page tables, KVM's per-VM state, sockets);
- the sum of proportional set sizes (smaps_rollup Pss) of the tenders and
  of the usernets, per instance, over a sample of --sample instances;
- the split of a tender's Pss into guest memory (spt: the guest's
  addresses; hvt: the KVM memory slot's mapping) and the tender itself.
A sample of instances (every one when fewer than --check) must answer
GET / with 200 (curl). A run stops early, saying why, when MemAvailable
falls under --reserve MiB or an instance fails to start: the largest count
reached is printed.

Everything started is killed on any exit, Ctrl-C included; each child also
gets PR_SET_PDEATHSIG, so that a killed benchmark leaves no tender behind
(a usernet ends when its tender's end of the link closes).

usage: sudo bench/density.py [--count N] [--step S] [--target spt,hvt,unix]
                             [--mem MiB] [--sample K] [--reserve MiB]
"""
import argparse, ctypes, os, random, re, resource, signal, socket, subprocess, sys, time

from netns import REL, ROOT, build_tenders, image, sh, tender_path

PR_SET_PDEATHSIG = 1
LIBC = ctypes.CDLL(None, use_errno=True)
FIRST_PORT = 20000


BENCH_PID = os.getpid()


def die_with_parent():
    """In the child before exec: killed when the benchmark dies, also if it
    died between the fork and this call (the child then has a new parent)."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != BENCH_PID:
        os._exit(1)


def meminfo_kib():
    with open("/proc/meminfo") as f:
        return {l.split(":")[0]: int(l.split()[1]) for l in f}


def mem_available_kib():
    return meminfo_kib()["MemAvailable"]


# The kernel's share, from /proc/meminfo: what the processes' Pss misses.
KERNEL_FIELDS = ("PageTables", "SecPageTables", "KernelStack", "SUnreclaim", "VmallocUsed")


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def tender_split_kib(pid, target, mem_mib):
    """(guest, tender) Pss of one tender: guest memory and the rest."""
    guest = tender = 0
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    vmas = re.findall(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+ *(.*)\n(?:(?!^[0-9a-f]+-).*\n)*?Pss:\s+(\d+)",
                      text, re.M)
    if target == "hvt":
        # The memory slot: the shared anonymous mapping (and whatever the
        # tender mapped inside its span).
        slot = [(int(s, 16), int(e, 16)) for s, e, name, _ in vmas if name.startswith("/dev/zero")]
        low, high = (min(s for s, _ in slot), max(e for _, e in slot)) if slot else (0, 0)
    else:
        low, high = 0x10000, mem_mib << 20
    for s, e, _, pss in vmas:
        if low <= int(s, 16) and int(e, 16) <= high:
            guest += int(pss)
        else:
            tender += int(pss)
    return guest, tender


class Fleet:
    """The processes started so far, killed on any exit."""

    def __init__(self):
        self.tenders, self.usernets, self.ports = [], [], []

    def kill(self):
        # Tenders first: an hvt tender whose network is gone would spin.
        for proc in self.tenders + self.usernets:
            if proc.poll() is None:
                proc.kill()
        for proc in self.tenders + self.usernets:
            proc.wait()
        self.tenders, self.usernets, self.ports = [], [], []

    def __len__(self):
        return len(self.tenders)


def start_unikernel(fleet, target, images, mem, port):
    """Starts lamina-usernet on `port` and the tender; False if the port is
    taken (the usernet says so and exits)."""
    tender_end, net_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        usernet = subprocess.Popen([os.path.join(REL, "lamina-usernet"), f"--link-fd={net_end.fileno()}",
                                    f"{port}:80"], pass_fds=[net_end.fileno()], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   preexec_fn=die_with_parent)
        ready = usernet.stdout.readline()
        usernet.stdout.close()
        if ready.strip() != b"ready":
            usernet.wait()
            return False
        fleet.usernets.append(usernet)
        tender = subprocess.Popen([tender_path(target), f"--mem={mem}",
                                   f"--net:service=fd:{tender_end.fileno()}", images[target],
                                   "--ipv4=10.0.2.15/24", "--ipv4-gateway=10.0.2.2", "--log=warn"],
                                  pass_fds=[tender_end.fileno()], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=die_with_parent)
        fleet.tenders.append(tender)
        fleet.ports.append(port)
        return True
    finally:
        tender_end.close()
        net_end.close()


def start_linux(fleet, target, images, mem, port):
    """The peer: the website as a Linux process on `port`."""
    proc = subprocess.Popen([os.path.join(REL, "website"), f"--port={port}", "--log=warn"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    # It reports a port in use at once; give it a moment to fail.
    try:
        proc.wait(timeout=0.002)
        return False
    except subprocess.TimeoutExpired:
        pass
    proc.stderr.close()
    fleet.tenders.append(proc)
    fleet.ports.append(port)
    return True


def serves(port, tries=50):
    """True once GET / on 127.0.0.1:port answers 200 (curl)."""
    for _ in range(tries):
        code = subprocess.run(["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}",
                               f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
        if code == "200":
            return True
        time.sleep(0.1)
    return False


def cpu_ticks(procs):
    """User and system CPU time of `procs`, in clock ticks."""
    total = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def idle_cpu_percent(fleet, seconds=5):
    """CPU the idle fleet uses, in percent of one core."""
    procs = fleet.tenders + fleet.usernets
    t0, c0 = time.time(), cpu_ticks(procs)
    time.sleep(seconds)
    t1, c1 = time.time(), cpu_ticks(procs)
    return 100 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)


def settle(fleet, seconds=60):
    """Waits until the newest instances are idle: their CPU time stops
    growing (booted and waiting), at most `seconds`."""
    cpu = cpu_ticks
    procs = fleet.tenders[-200:] + fleet.usernets[-200:]
    deadline = time.time() + seconds
    last = cpu(procs)
    while time.time() < deadline:
        time.sleep(1)
        now = cpu(procs)
        if now == last:
            return
        last = now


def measure(fleet, target, mem, baseline, sample):
    """Prints and returns per-instance figures (KiB) for the instances running."""
    n = len(fleet)
    dead = [p for p in fleet.tenders + fleet.usernets if p.poll() is not None]
    if dead:
        sys.exit(f"{target}: {len(dead)} processes died after starting (first: {dead[0].args[0]} "
                 f"status {dead[0].returncode})")
    now = meminfo_kib()
    drop = (baseline["MemAvailable"] - now["MemAvailable"]) / n
    kernel = ", ".join(f"{field} {(now[field] - baseline[field]) / n:.0f}" for field in KERNEL_FIELDS
                       if field in now)
    picks = random.Random(n).sample(range(n), min(sample, n))
    tender = sum(pss_kib(fleet.tenders[i].pid) for i in picks) / len(picks)
    usernet = sum(pss_kib(fleet.usernets[i].pid) for i in picks) / len(picks) if fleet.usernets else 0
    split = ""
    if target in ("spt", "hvt"):
        few = picks[:20]
        parts = [tender_split_kib(fleet.tenders[i].pid, target, mem) for i in few]
        guest = sum(g for g, _ in parts) / len(parts)
        own = sum(t for _, t in parts) / len(parts)
        split = f" (guest {guest / 1024:.2f} + tender {own / 1024:.2f})"
    total = tender + usernet
    busy = idle_cpu_percent(fleet)
    print(f"  {target} x{n}: MemAvailable drop {drop / 1024:6.2f} MiB each; Pss {total / 1024:5.2f} MiB each ="
          f" tender {tender / 1024:.2f}{split} + usernet {usernet / 1024:.2f}"
          f"; not in Pss {(drop - total) / 1024:.2f} (KiB each: {kernel}); idle CPU {busy:.1f}% of a core"
          f" for all", flush=True)
    return {"drop": drop, "pss": total, "count": n}


def check_sample(fleet, target, count):
    ports = fleet.ports if len(fleet.ports) <= count else random.Random(1).sample(fleet.ports, count)
    failed = [port for port in ports if not serves(port)]
    if failed:
        sys.exit(f"{target}: {len(failed)} of {len(ports)} sampled instances do not serve GET / "
                 f"(ports {failed[:5]})")
    print(f"  {target}: GET / answered 200 on {len(ports)} of {len(fleet)} instances (curl)", flush=True)


def run(target, args, images):
    """Starts up to --count instances in steps; returns the last figures."""
    fleet = Fleet()
    start = {"unix": start_linux}.get(target, start_unikernel)
    baseline = meminfo_kib()
    port = FIRST_PORT
    result, why = None, ""
    try:
        t0 = time.time()
        while len(fleet) < args.count:
            goal = min(len(fleet) + args.step, args.count)
            while len(fleet) < goal:
                if port > 65000:
                    why = "out of ports"
                    break
                if not start(fleet, target, images, args.mem, port):
                    port += 1  # taken by someone else: the next one
                    continue
                port += 1
            settle(fleet)
            print(f"  {target}: {len(fleet)} started in {time.time() - t0:.1f} s", flush=True)
            result = measure(fleet, target, args.mem, baseline, args.sample)
            if why:
                break
            if mem_available_kib() < args.reserve << 10:
                why = f"MemAvailable under --reserve={args.reserve} MiB"
                break
        check_sample(fleet, target, args.check)
        if why:
            print(f"  {target}: stopped at {len(fleet)}: {why}")
        return result
    finally:
        fleet.kill()
        # Let the kernel free what the processes held before the next run.
        time.sleep(2)


def raise_limits(args):
    """Ids: a usernet and a tender per unikernel, and hvt's threads (three
    per VM); one target runs at a time."""
    need = args.count * (4 if "hvt" in args.targets else 2) + 2000
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    if pid_max < need:
        sys.exit(f"--count={args.count} needs about {need} process and thread ids; "
                 f"kernel.pid_max is {pid_max} (sysctl -w kernel.pid_max={need})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    resource.setrlimit(resource.RLIMIT_NPROC, (hard, hard))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200, help="instances to start on each target")
    ap.add_argument("--step", type=int, default=0, help="measure every STEP instances (default: at the end)")
    ap.add_argument("--target", default="spt,hvt,unix",
                    help="comma-separated: spt, hvt, unix (the Linux process peer)")
    ap.add_argument("--mem", type=int, default=8, help="guest memory in MiB")
    ap.add_argument("--sample", type=int, default=200, help="instances whose Pss is read")
    ap.add_argument("--check", type=int, default=50, help="instances that must serve GET /")
    ap.add_argument("--reserve", type=int, default=1024, help="stop when MemAvailable falls under this (MiB)")
    args = ap.parse_args()
    args.targets = args.target.split(",")
    args.step = args.step or args.count
    if any(t not in ("spt", "hvt", "unix") for t in args.targets):
        sys.exit("--target: spt, hvt or unix")
    if os.geteuid() != 0 and "hvt" in args.targets and not os.access("/dev/kvm", os.W_OK):
        sys.exit("hvt needs /dev/kvm")
    raise_limits(args)
    sh(f"cd {ROOT} && cargo build --release -q -p lamina-cli -p lamina-usernet"
       " -p website")
    build_tenders()
    images = {t: image(t, "website") for t in args.targets if t in ("spt", "hvt")}
    # Ctrl-C and SIGTERM unwind through the `finally` that kills the fleet.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    print(f"idle website instances, --mem={args.mem} for the unikernels, MemAvailable at start "
          f"{mem_available_kib() >> 10} MiB")
    results = {}
    for target in args.targets:
        results[target] = run(target, args, images)
    peer = results.get("unix")
    print("per instance (MiB): MemAvailable drop / Pss")
    for target, r in results.items():
        if r is None:
            continue
        ratio = ""
        if peer and target != "unix":
            ratio = f"   {r['drop'] / peer['drop']:.2f}x / {r['pss'] / peer['pss']:.2f}x the Linux process"
        print(f"  {target:5} x{r['count']:<6} {r['drop'] / 1024:6.2f} / {r['pss'] / 1024:5.2f}{ratio}")
        if target != "unix":
            fits = (24 << 20) / r["drop"]
            print(f"        a 24 GiB host at this cost: about {fits:,.0f} instances")


if __name__ == "__main__":
    main()
