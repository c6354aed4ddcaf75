#!/usr/bin/env python3
"""HTTP benchmark of the website (issues 5 and 11), against nginx serving the
same files, all in one run, with wrk.

- nginx:  in a namespace, reached over a veth pair from the client namespace.
- spt/hvt: the website unikernel in a namespace on a tap, client beside it.
- unix:   the website as a Linux process, and nginx, both on loopback.

Reports requests/s and p99 latency for / (1.5 KB page) in three cases, each
as ratios against nginx in the same case (and hvt against spt), from the
median of --runs runs of each server, the servers taking turns run by run
(each server's figures are those of its median run):
- under load: wrk -t2 -c CONNECTIONS;
- at low load: wrk -t1 -c1 (one client, one request at a time);
- on a busy host: under load, with one core kept busy by an unrelated shell
  loop (`sh -c 'while :; do :; done'`), and each server's share of its
  quiet figure;
- behind idle connections: under load, while --idle more connections (500)
  that never send a request stay open from the client's side, opened
  first, as a server's kept-alive browser connections are; and each
  server's share of its quiet figure;
- with many connections: wrk -t2 -c MANY (1,000), every connection busy,
  and the frames each unikernel's tap dropped because its reader fell
  behind (each comes back only when the client retransmits it, 200 ms or
  more later: the p99 shows them).
The hvt tender runs with --x-stats: VM exits per request are printed for
each case, and for each tender the CPU of each of its threads over the run
(the vCPU thread's includes the guest's time), per request, and how much
of the run hvt's vCPU spent in KVM_RUN, split into the guest's own work, its
polls before sleeping and the world switches of its exits; for every server,
the client's CPU per request and how busy the host's CPUs were (near 100%:
the run was bound by them, and the server with less CPU per request serves
more). Then the website as a Linux process on loopback, and (with --memory)
the smallest guest memory that serves under load.

usage: sudo bench/http.py [--runs N] [--seconds S] [--connections C] [--idle N] [--many N] [--memory]
"""
import argparse, contextlib, os, re, resource, shutil, socket, subprocess, sys, tempfile, time

from netns import REL, ROOT, build_tenders, delete, image, sh, tap_namespace, tender_path, veth_namespaces

SITE = os.path.join(ROOT, "examples", "website", "site")


def host_cpu():
    """(busy, total) CPU time of the whole host so far, in ticks."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


# Opens argv[3] connections to argv[1]:argv[2], says "open", and holds
# them until its standard input closes.
IDLE_HOLDER = """import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
print("open", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def idle_connections(ns, url, count):
    """`count` connections to `url`'s server from namespace `ns`, open and
    silent while the block runs."""
    if not count:
        yield
        return
    host, port = re.match(r"http://([\d.]+):?(\d*)/", url).groups()
    prefix = ["ip", "netns", "exec", ns] if ns else []
    holder = subprocess.Popen([*prefix, sys.executable, "-c", IDLE_HOLDER, host, port or "80", str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if holder.stdout.readline().strip() != "open":
            sys.exit(f"bench/http.py: could not open {count} idle connections to {url}")
        # Idle for a while, as kept-alive connections between requests are
        # (a Lamina stack parks a connection idle for a second).
        time.sleep(2)
        yield
    finally:
        holder.stdin.close()
        holder.wait()


def wrk(ns, url, args):
    """(requests/s, p99 ms, errors, requests, the client's CPU seconds, the
    host's CPUs' busy share) of one wrk run (behind `args.idle` idle
    connections, if any)."""
    with idle_connections(ns, url, getattr(args, "idle", 0)):
        return wrk_run(ns, url, args)


def wrk_run(ns, url, args):
    prefix = f"ip netns exec {ns} " if ns else ""
    threads = min(2, args.connections)
    # Whether a run was bound by the host's CPUs (client and server share
    # them), and what the client took of them.
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_before = host_cpu()
    out = sh(f"{prefix}wrk -t{threads} -c{args.connections} -d{args.seconds}s --latency {url}",
             capture_output=True).stdout
    host_after = host_cpu()
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
    host_busy = (host_after[0] - host_before[0]) / max(host_after[1] - host_before[1], 1)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, float(p99.group(1)) * scale, errors.group(0) if errors else "", requests, client_cpu, host_busy


def nginx_conf(tmp, listen):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
worker_rlimit_nofile 20000; events {{ worker_connections 16384; }}
http {{ access_log off; include /etc/nginx/mime.types; sendfile on; tcp_nodelay on; keepalive_requests 100000;
  server {{ listen {listen}; root {SITE}; }} }}
""")
    return conf


def thread_cpu(pid):
    """CPU seconds so far of each thread of process `pid`, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        cpu[name] = cpu.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
    return cpu


def unikernel(target, mem, args):
    """(wrk's figures, alive, VM exits or None, {thread: CPU seconds during
    the wrk run}, hvt's seconds in KVM_RUN or None, the guest's split of its
    vCPU time (a dict) or None, frames the tap dropped during the run)."""
    ns = f"lamina-http-{target}"
    tap_namespace(ns, "10.212.0.1/24")
    stats = ["--x-stats"] if target == "hvt" else []
    proc = subprocess.Popen(["ip", "netns", "exec", ns, tender_path(target), f"--mem={mem}",
                             "--net:service=tap0", *stats, image(target, "website"), "--ipv4=10.212.0.2/24",
                             "--log=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if sh(f"ip netns exec {ns} curl -s -o /dev/null -w %{{http_code}} http://10.212.0.2/", check=False,
                  capture_output=True).stdout == "200":
                break
            time.sleep(0.1)
        before = thread_cpu(proc.pid)  # `ip netns exec` execs the tender
        dropped_before = tap_dropped(ns)
        result = wrk(ns, "http://10.212.0.2/", args)
        dropped = tap_dropped(ns) - dropped_before
        alive = proc.poll() is None
        after = thread_cpu(proc.pid) if alive else {}
        threads = {name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)}
    finally:
        proc.terminate()
        _, stderr = proc.communicate()
        delete(ns)
    exits = re.search(r"(\d+) VM exits", stderr or "")
    in_guest = re.search(r"([\d.]+) s in KVM_RUN", stderr or "")
    # The guest's side (a Lamina guest under lamina-hvt --x-stats).
    split = re.search(r"guest: ([\d.]+) s of its own work, ([\d.]+) s polling its queues before sleeping "
                      r"\((\d+) polls, (\d+) found input\), [\d.]+ s in (\d+) POLLs, of which ([\d.]+) s", stderr or "")
    guest = None
    if split:
        work, polling, polls, caught, sleeps, switches = split.groups()
        guest = {"work": float(work), "polling": float(polling), "polls": int(polls), "caught": int(caught),
                 "sleeps": int(sleeps), "switches": float(switches)}
    return result, alive, int(exits.group(1)) if exits else None, threads, \
        float(in_guest.group(1)) if in_guest else None, guest, dropped


def tap_dropped(ns):
    """Frames the tap in `ns` dropped so far on their way to its reader
    (the unikernel): its queue (txqueuelen) was full."""
    return int(sh(f"ip netns exec {ns} cat /sys/class/net/tap0/statistics/tx_dropped",
                  capture_output=True).stdout)


def median_run(runs, rps):
    """The run of `runs` whose requests/s (`rps(run)`) is the median (the
    lower of the middle two for an even count)."""
    ranked = sorted(runs, key=rps)
    return ranked[(len(ranked) - 1) // 2]


class BusyCore:
    """One core kept busy by an unrelated shell loop, as on a shared host."""

    def __enter__(self):
        self.proc = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        return self

    def __exit__(self, *_):
        self.proc.kill()
        self.proc.wait()


def nginx_veth(args):
    a, b = "lamina-http-client", "lamina-http-nginx"
    veth_namespaces(a, b, "10.213.0.1/24", "10.213.0.2/24", "h")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(["ip", "netns", "exec", b, "nginx", "-c", nginx_conf(tmp, "10.213.0.2:80")])
        try:
            time.sleep(0.5)
            return wrk(a, "http://10.213.0.2/", args)
        finally:
            proc.terminate()
            proc.wait()
            delete(a, b)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(proc, what):
    """Fails clearly if `proc` (a server just started) has already exited."""
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit(f"bench/http.py: {what} exited at start (status {proc.returncode}); see its message above")


def loopback(args):
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(["nginx", "-c", nginx_conf(tmp, f"127.0.0.1:{port}")])
        try:
            started(proc, "nginx on loopback")
            nginx = wrk(None, f"http://127.0.0.1:{port}/", args)
        finally:
            proc.terminate()
            proc.wait()
    sh(f"cd {ROOT} && cargo build --release -q -p website")
    port = free_port()
    proc = subprocess.Popen([os.path.join(REL, "website"), f"--port={port}", "--log=warn"])
    try:
        started(proc, "the website on unix")
        unix = wrk(None, f"http://127.0.0.1:{port}/", args)
    finally:
        proc.terminate()
        proc.wait()
    return nginx, unix


def budget(result):
    """What the client took of the host's CPUs in a wrk run, and how busy
    they all were: a run with the CPUs near 100% busy was bound by them,
    and a server that needs less CPU per request serves more."""
    _, _, _, requests, client_cpu, host_busy = result
    return (f"client (wrk) {client_cpu / max(requests, 1) * 1e6:.1f} us/request; "
            f"the host's {os.cpu_count()} CPUs {host_busy:.0%} busy")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3, help="runs of each server per case (medians are reported)")
    ap.add_argument("--idle", type=int, default=500, dest="idle_count",
                    help="idle connections held open in the fourth case")
    ap.add_argument("--many", type=int, default=1000, help="connections of the last case")
    ap.add_argument("--memory", action="store_true", help="also find the smallest guest memory serving wrk")
    args = ap.parse_args()
    if min(args.runs, args.seconds, args.connections, args.idle_count, args.many) < 1:
        sys.exit("bench/http.py: --runs, --seconds, --connections, --idle and --many must be at least 1")
    if os.geteuid() != 0:
        sys.exit("bench/http.py creates network namespaces: run it as root")
    missing = [tool for tool in ("wrk", "nginx", "curl") if not shutil.which(tool)]
    if missing:
        sys.exit(f"bench/http.py needs {', '.join(missing)} (Debian: apt-get install {' '.join(missing)})")
    sh(f"cd {ROOT} && cargo build --release -q -p lamina-cli")
    build_tenders()
    fmt = lambda r: f"{r[0]:9.0f} req/s  p99 {r[1]:7.2f} ms {r[2]}"
    low = argparse.Namespace(seconds=args.seconds, connections=1)
    behind_idle = argparse.Namespace(seconds=args.seconds, connections=args.connections, idle=args.idle_count)
    many = argparse.Namespace(seconds=args.seconds, connections=args.many)
    cases = [(f"under load: wrk -t2 -c{args.connections} -d{args.seconds}s", args, None),
             (f"at low load: wrk -t1 -c1 -d{args.seconds}s", low, None),
             (f"on a busy host (one core in a shell loop): wrk -t2 -c{args.connections} -d{args.seconds}s", args, BusyCore),
             (f"behind {args.idle_count} idle connections opened first: wrk -t2 -c{args.connections} -d{args.seconds}s",
              behind_idle, None),
             (f"with many connections: wrk -t2 -c{args.many} -d{args.seconds}s", many, None)]
    quiet = {}
    for title, case, busy in cases:
        print(f"GET / {title}, median of {args.runs} interleaved runs")
        with (busy() if busy else contextlib.nullcontext()):
            nginx_runs, runs = [], {"spt": [], "hvt": []}
            for _ in range(args.runs):
                nginx_runs.append(nginx_veth(case))
                for target in runs:
                    runs[target].append(unikernel(target, 64, case))
        nginx = median_run(nginx_runs, lambda r: r[0])
        results = {}
        for target, target_runs in runs.items():
            result, _, *rest = median_run(target_runs, lambda r: r[0][0])
            # A unikernel that died in any of the runs is reported.
            results[target] = (result, all(run[1] for run in target_runs), *rest)
        if busy is None and case is args:
            quiet = {"nginx": nginx[0], **{t: r[0][0] for t, r in results.items()}}
        unlike_quiet = busy or case is behind_idle
        share = lambda name, rps: f"   {rps / quiet[name]:.2f}x its quiet req/s" if unlike_quiet and quiet else ""
        print(f"  nginx (veth)        {fmt(nginx)}{share('nginx', nginx[0])}")
        print("      " + budget(nginx))
        for target, (result, alive, exits, threads, in_guest, guest, dropped) in results.items():
            line = f"  {target} (tap)          {fmt(result)}   {result[0] / nginx[0]:.2f}x nginx"
            if target == "hvt":
                line += f", {result[0] / results['spt'][0][0]:.2f}x spt"
                if exits is not None:
                    line += f", {exits / max(result[3], 1):.3f} VM exits per request"
            if not alive:
                line += "  (the unikernel died)"
            print(line + share(target, result[0]))
            if case is many:
                print(f"      the tap dropped {dropped} frames ({dropped / max(result[3], 1):.3f} per request)")
            # Where the tender's time went: each thread's CPU over the run,
            # as a share of a CPU and per request (the vCPU thread's
            # includes the guest's own time).
            if threads and result[3]:
                line = ", ".join(f"{name} {cpu / case.seconds:.0%} of a CPU ({cpu / result[3] * 1e6:.1f} us/request)"
                                 for name, cpu in sorted(threads.items(), key=lambda t: -t[1]))
                if in_guest is not None:
                    # Wall time, over the tender's whole life (the run and
                    # about a second of start and stop).
                    line += f"; the vCPU in KVM_RUN {in_guest / case.seconds:.0%} of the run"
                print("      " + line)
            if guest and result[3]:
                # Over the tender's whole life, per request of the run.
                per = lambda seconds: seconds / result[3] * 1e6
                print(f"      guest: own work {per(guest['work']):.1f} us/request, polling {per(guest['polling']):.1f} "
                      f"us/request ({guest['caught'] / max(guest['polls'], 1):.0%} of {guest['polls']} polls found input), "
                      f"{guest['switches'] * 1e6 / max(guest['sleeps'], 1):.1f} us per exit and return")
            print("      " + budget(result))
    n, u = loopback(args)
    print(f"  nginx (loopback)    {fmt(n)}")
    print(f"  unix (loopback)     {fmt(u)}   {u[0] / n[0]:.2f}x nginx")
    if not args.memory:
        return
    print("smallest guest memory serving wrk without errors (MiB)")
    for target in ("spt", "hvt"):
        smallest = None
        for mem in (64, 32, 16, 8, 6, 4, 3, 2):
            quick = argparse.Namespace(seconds=3, connections=args.connections)
            (rps, _, errors, *_), alive, *_ = unikernel(target, mem, quick)
            if not alive or errors or rps == 0:
                break
            smallest = mem
        print(f"  {target}: {smallest}")


if __name__ == "__main__":
    main()
