#!/usr/bin/env python3
"""DNS benchmark (issue 12): dnsperf against the DNS example unikernel on spt
and hvt, and against NSD and Knot serving the same zone files, in one run.

- NSD, Knot: each in a namespace, reached over a veth pair from a client
  namespace; one server thread each (NSD server-count 1, Knot udp-workers
  and tcp-workers 1), as the unikernel has one vCPU.
- spt/hvt: examples/dns in a namespace on a tap, dnsperf beside it.

All four run at once, idle but for their turn: each of the --runs rounds
queries each server in turn, so that a busy moment of a shared host falls
on all of them rather than on one.

The zones are examples/dns/zones/*.zone (one per zone, named <origin>.zone),
the files the example bakes into its image. The query file is built from
them (as NSD reads them, `nsd-checkzone -p`): existing names with their A,
AAAA, MX and TXT records, names that do not exist (NXDOMAIN), and names a
wildcard answers; 70/15/15, shuffled with a fixed seed. Every server must
give the same mix of response codes as NSD (printed per row).

For each server: queries/s, average and p99 latency (from dnsperf -v's
per-query latencies), each the median of --runs rounds of --seconds seconds
with dnsperf -c CLIENTS -q OUTSTANDING, and the ratio of queries/s to NSD's
in the same run. For the unikernels also the image size and (unless
--no-memory) the smallest guest memory that answers a 3-second run at -q 20
without losing a query, found by bisection over --mem.

usage: sudo bench/dns.py [--seconds S] [--runs N] [--clients C] [--outstanding Q] [--no-memory]
"""
import argparse, contextlib, os, random, re, shutil, statistics, subprocess, sys, tempfile, time

from netns import REL, ROOT, build_tenders, delete, image, sh, tap_namespace, tender_path, veth_namespaces

ZONES = os.path.join(ROOT, "examples", "dns", "zones")
# By path: from ROOT, `lamina build dns` would name the lamina-dns crate's
# directory, not the example.
EXAMPLE = os.path.join(ROOT, "examples", "dns")
TOOLS = {"dnsperf": "dnsperf", "nsd": "nsd", "nsd-checkzone": "nsd", "knotd": "knot", "kdig": "knot-dnsutils"}


def zones():
    """[(origin, path)] of the zone files (--zones, else the example's)."""
    found = sorted(f for f in os.listdir(ZONES) if f.endswith(".zone")) if os.path.isdir(ZONES) else []
    if not found:
        sys.exit(f"bench/dns.py: no zone files in {ZONES} (<origin>.zone)")
    return [(f[: -len(".zone")].rstrip(".") + ".", os.path.abspath(os.path.join(ZONES, f))) for f in found]


def records(origin, path):
    """(owner, type) of every record of a zone, as NSD reads it."""
    out = sh(f"nsd-checkzone -p {origin} {path}", capture_output=True).stdout
    current, owner, depth, found = origin, None, 0, []
    for line in out.splitlines():
        text = re.sub(r'"(\\.|[^"\\])*"', '""', line).split(";")[0]
        if depth > 0:  # inside an RR's parentheses
            depth += text.count("(") - text.count(")")
            continue
        if not text.strip():
            continue
        if text.startswith("$ORIGIN"):
            current = text.split()[1]
            continue
        fields = text.split()
        if not text[0].isspace():
            name = fields.pop(0)
            owner = name if name.endswith(".") else f"{name}.{current}"
        fields = [f for f in fields if not f.isdigit() and f not in ("IN", "CH", "HS")]
        found.append((owner.lower(), fields[0].upper()))
        depth = text.count("(") - text.count(")")
    return found


def query_file(path, count=10000, seed=12):
    """Writes dnsperf's input for the example's zones; returns the mix."""
    existing, wildcards, nxdomain = [], [], []
    for origin, zone in zones():
        rrs = records(origin, zone)
        cuts = {o for o, t in rrs if t == "NS" and o != origin}
        below_cut = lambda name: any(name == c or name.endswith("." + c) for c in cuts)
        for owner, rtype in rrs:
            if owner.startswith("*."):
                if rtype in ("A", "AAAA", "MX", "TXT"):
                    wildcards += [(f"w{i}.{owner[2:]}", rtype) for i in range(20)]
            elif rtype in ("A", "AAAA", "MX", "TXT") and not below_cut(owner) \
                    and (owner, rtype) not in existing:
                existing.append((owner, rtype))
        # Not under any wildcard of the zone, nor a cut: NXDOMAIN.
        if not any(o.startswith("*.") and (o[2:] == origin) for o, _ in rrs):
            nxdomain += [(f"nx{i}.absent.{origin}", "A") for i in range(50)]
    rng = random.Random(seed)
    mix = [(existing, 0.70), (nxdomain, 0.15), (wildcards, 0.15)]
    mix = [(names, share) for names, share in mix if names]
    total = sum(share for _, share in mix)
    with open(path, "w") as f:
        for _ in range(count):
            pick = rng.random() * total
            for names, share in mix:
                if pick < share:
                    break
                pick -= share
            f.write("%s %s\n" % rng.choice(names))
    return {"existing": len(existing), "NXDOMAIN": len(nxdomain), "wildcard": len(wildcards)}


def dnsperf(ns, server, queries, seconds, args):
    """(queries/s, average ms, p99 ms, lost, response codes) of one run."""
    out = sh(f"ip netns exec {ns} dnsperf -s {server} -d {queries} -l {seconds} -c {args.clients}"
             f" -q {args.outstanding} -t 2 -v", capture_output=True).stdout
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.M))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    average = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1)) * 1e3
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    codes = re.search(r"Response codes:\s+(.*)", out)
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")
    return qps, average, p99, lost, codes.group(1).strip() if codes else "none"


def codes(text):
    """dnsperf's response codes line as {code: percent}."""
    return {c: float(p) for c, p in re.findall(r"(\w+) [\d]+ \(([\d.]+)%\)", text)}


def same_codes(a, b):
    """The same response codes, each within a percent (a run's length varies)."""
    a, b = codes(a), codes(b)
    return a.keys() == b.keys() and all(abs(a[c] - b[c]) <= 1.0 for c in a)


def medians(runs):
    """Median figures of runs, lost queries summed."""
    med = lambda i: statistics.median(r[i] for r in runs)
    return med(0), med(1), med(2), sum(r[3] for r in runs), runs[-1][4]


def wait_for_answer(ns, server, name, proc=None, limit=10.0):
    start = time.time()
    while time.time() - start < limit:
        if proc is not None and proc.poll() is not None:
            return False
        out = sh(f"ip netns exec {ns} kdig +timeout=1 +retry=0 @{server} {name} SOA", check=False,
                 capture_output=True).stdout
        if "status: NOERROR" in out:
            return True
        time.sleep(0.1)
    return False


def nsd_conf(tmp, listen):
    conf = os.path.join(tmp, "nsd.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
  ip-address: {listen}
  port: 53
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonelistfile: "{tmp}/zone.list"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  pidfile: "{tmp}/nsd.pid"
  logfile: "{tmp}/nsd.log"
  verbosity: 0
  hide-version: yes
  # Debian builds NSD with response rate limiting (200/s per client
  # subnet by default): off, as Knot's is unless configured.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
""")
        for origin, path in zones():
            f.write(f"zone:\n  name: {origin}\n  zonefile: {path}\n")
    return ["nsd", "-d", "-c", conf]


def knot_conf(tmp, listen):
    conf = os.path.join(tmp, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
  rundir: {tmp}
  listen: {listen}@53
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: error
database:
  storage: {tmp}
template:
  - id: default
    storage: {tmp}
    zonefile-sync: -1
    journal-content: none
zone:
""")
        for origin, path in zones():
            f.write(f"  - domain: {origin}\n    file: {path}\n")
    return ["knotd", "-c", conf]


def start_linux(stack, name, conf, index):
    """NSD or Knot in namespace lamina-dns-NAME, reached over veth from
    lamina-dns-NAME-client; (client namespace, server address)."""
    client, server = f"lamina-dns-{name.lower()}-client", f"lamina-dns-{name.lower()}"
    subnet = f"10.{214 + index}.0"
    veth_namespaces(client, server, f"{subnet}.1/24", f"{subnet}.2/24", f"d{index}")
    stack.callback(delete, client, server)
    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    proc = subprocess.Popen(["ip", "netns", "exec", server, *conf(tmp, f"{subnet}.2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stack.callback(lambda: (proc.terminate(), proc.wait()))
    if not wait_for_answer(client, f"{subnet}.2", zones()[0][0], proc):
        proc.terminate()
        sys.exit(f"bench/dns.py: {name} did not answer: {proc.communicate()[1]}")
    return client, f"{subnet}.2"


def start_unikernel(stack, target, mem):
    """The example on `target` with `mem` MiB on a tap in namespace
    lamina-dns-TARGET; (namespace, address, process), or None if it never
    answered."""
    ns = f"lamina-dns-{target}"
    tap_namespace(ns, "10.213.0.1/24")
    stack.callback(delete, ns)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, tender_path(target), f"--mem={mem}",
                             "--net:service=tap0", image(target, EXAMPLE), "--ipv4=10.213.0.2/24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (proc.terminate(), proc.wait()))
    if not wait_for_answer(ns, "10.213.0.2", zones()[0][0], proc):
        return None
    return ns, "10.213.0.2", proc


def unikernel(target, mem, queries, args):
    """One dnsperf run against the example on `target` with `mem` MiB:
    (figures, alive), figures None if it never answered."""
    with contextlib.ExitStack() as stack:
        started = start_unikernel(stack, target, mem)
        if started is None:
            return None, False
        ns, address, proc = started
        result = dnsperf(ns, address, queries, args.seconds, args)
        return result, proc.poll() is None


def smallest_memory(target, queries, args, codes):
    """The least --mem (MiB) that answers a 3-second run (-q 20) with no
    query lost and NSD's response codes, by bisection between 2 and 64."""
    # A short run at a gentler load: this finds what the server needs to
    # hold its zones and answer, not how deep its queues are.
    quick = argparse.Namespace(**{**vars(args), "seconds": min(3, args.seconds),
                                  "outstanding": min(20, args.outstanding)})
    ok = lambda mem: (lambda r: r[0] is not None and r[1] and r[0][3] == 0 and same_codes(r[0][4], codes))(
        unikernel(target, mem, queries, quick))
    low, high = 1, 64  # low fails (below the tenders' minimum), high must answer
    if not ok(high):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid
    return high


def main():
    global ZONES
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--outstanding", type=int, default=100)
    ap.add_argument("--no-memory", action="store_true", help="skip the smallest-memory bisection")
    ap.add_argument("--zones", default=ZONES, help="NSD's and Knot's zone files (the example bakes its own)")
    args = ap.parse_args()
    ZONES = args.zones
    if os.geteuid() != 0:
        sys.exit("bench/dns.py creates network namespaces: run it as root")
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if missing:
        sys.exit(f"bench/dns.py needs {', '.join(missing)} (Debian: apt-get install {' '.join(missing)})")
    with tempfile.TemporaryDirectory() as tmp:
        queries = os.path.join(tmp, "queries")
        mix = query_file(queries)
        print(f"zones: {', '.join(o for o, _ in zones())}; queries: 70% existing names (A/AAAA/MX/TXT,"
              f" {mix['existing']} kinds), 15% NXDOMAIN, 15% wildcard ({mix['wildcard']} names)")
        print(f"dnsperf -c {args.clients} -q {args.outstanding} -l {args.seconds}, median of {args.runs} runs;"
              f" load average before: {os.getloadavg()[0]:.1f}")
        fmt = lambda r: f"{r[0]:9.0f} q/s  avg {r[1]:6.3f} ms  p99 {r[2]:6.3f} ms  lost {r[3]} (all runs)"
        example = os.path.isdir(EXAMPLE)
        if example:
            sh(f"cd {ROOT} && cargo build --release -q -p lamina-cli")
            build_tenders()
            sizes = {t: os.path.getsize(image(t, EXAMPLE)) for t in ("spt", "hvt")}
        # Every server runs at once, idle but for its turn: each round asks
        # each in turn, so that a busy moment of the host is shared out.
        with contextlib.ExitStack() as stack:
            servers = {"NSD": start_linux(stack, "NSD", nsd_conf, 1),
                       "Knot": start_linux(stack, "Knot", knot_conf, 2)}
            procs = {}
            for target in ("spt", "hvt") if example else ():
                started = start_unikernel(stack, target, 64)
                if started is None:
                    print(f"  {target} (tap): the example did not answer")
                    continue
                servers[target] = started[:2]
                procs[target] = started[2]
            runs = {name: [] for name in servers}
            for _ in range(args.runs):
                for name, (ns, address) in servers.items():
                    runs[name].append(dnsperf(ns, address, queries, args.seconds, args))
            alive = {target: proc.poll() is None for target, proc in procs.items()}
        results = {name: medians(r) for name, r in runs.items()}
        nsd = results["NSD"]
        print(f"  NSD (veth)    {fmt(nsd)}   codes: {nsd[4]}")
        knot = results["Knot"]
        print(f"  Knot (veth)   {fmt(knot)}   {knot[0] / nsd[0]:.2f}x NSD   codes: {knot[4]}"
              + ("" if same_codes(knot[4], nsd[4]) else "  (response codes differ from NSD's)"))
        if not example:
            print("  spt, hvt: examples/dns is not in the tree yet")
            return
        goal = {"spt": 1.2, "hvt": 1.0}
        for target in procs:
            result = results[target]
            line = (f"  {target} (tap)     {fmt(result)}   {result[0] / nsd[0]:.2f}x NSD (goal {goal[target]}x)"
                    f"   codes: {result[4]}   image {sizes[target] / 1024:.0f} KiB")
            if not same_codes(result[4], nsd[4]):
                line += "  (response codes differ from NSD's)"
            if not alive[target]:
                line += "  (the unikernel died)"
            if not args.no_memory:
                line += f"   smallest memory: {smallest_memory(target, queries, args, nsd[4])} MiB"
            print(line)


if __name__ == "__main__":
    main()
