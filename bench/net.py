#!/usr/bin/env python3
"""Network benchmarks of the echo unikernel (issue 4), against a Linux echo
server (bench/peers std-echo) reached over the same kind of path, all in one
run and all inside network namespaces this script creates and removes.

- Lamina: namespace with a tap; the tender (lamina-spt / lamina-hvt) runs
  the echo unikernel on the tap; the client runs in the namespace.
- Linux:  two namespaces joined by a veth pair; std-echo in one, the client
  in the other.

Figures: TCP bulk echo throughput (one connection, --bytes each way) and
request/response round trips per second (64-byte requests), medians of
--runs, the peers taking turns run by run. The hvt tender runs with
--x-stats and reports its VM exits when
stopped, from which exits per round trip are derived.

usage: sudo bench/net.py [--runs N] [--bytes B] [--round-trips N]
"""
import argparse, os, re, statistics, subprocess, sys, time

from netns import REL, ROOT, build_tenders, delete, image, sh, tap_namespace, tender_path, veth_namespaces


def measure_once(ns, addr, args):
    """One bulk run and one round-trip run: (MB/s, round trips/s)."""
    load = os.path.join(REL, "echo-load")
    out = sh(f"ip netns exec {ns} {load} {addr}:7 --connections 1 --bytes {args.bytes}", capture_output=True).stdout
    bulk = float(re.search(r"([\d.]+) MB/s", out).group(1))
    out = sh(f"ip netns exec {ns} {load} {addr}:7 --connections 0 --round-trips {args.round_trips}",
             capture_output=True).stdout
    return bulk, float(re.search(r"(\d+) round trips/s", out).group(1))


class Lamina:
    """The echo unikernel on `target`, on a tap in a namespace of its own."""

    def __init__(self, target):
        self.target, self.ns, self.addr = target, f"lamina-bench-{target}", "10.210.0.2"
        tap_namespace(self.ns, "10.210.0.1/24")
        tender = tender_path(target)
        stats = ["--x-stats"] if target == "hvt" else []
        self.log = open(f"/tmp/lamina-bench-{target}.log", "w+")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, tender, *stats, "--mem=64", "--net:service=tap0",
                                      image(target, "echo"), "--ipv4=10.210.0.2/24", "--log=warn"],
                                     stdout=self.log, stderr=self.log)
        for _ in range(100):
            if sh(f"ip netns exec {self.ns} sh -c 'echo x | nc -N -w 1 {self.addr} 7'", check=False,
                  capture_output=True).stdout.strip() == "x":
                return
            time.sleep(0.1)
        sys.exit(f"the echo unikernel on {target} did not answer; see {self.log.name}")

    def close(self):
        """Stops the tender; returns its VM exit count (hvt --x-stats) or None."""
        self.proc.terminate()
        self.proc.wait()
        delete(self.ns)
        self.log.seek(0)
        exits = re.search(r"(\d+) VM exits", self.log.read())
        return int(exits.group(1)) if exits else None


class Linux:
    """std-echo in one namespace, reached over a veth pair from another."""

    def __init__(self):
        self.client, self.server, self.ns, self.addr = "lamina-bench-client", "lamina-bench-server", None, "10.211.0.2"
        self.ns = self.client
        veth_namespaces(self.client, self.server, "10.211.0.1/24", "10.211.0.2/24", "b")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.server, os.path.join(REL, "std-echo"), "7", "0.0.0.0"])
        time.sleep(0.3)

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        delete(self.client, self.server)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bytes", type=int, default=100_000_000)
    ap.add_argument("--round-trips", type=int, default=20000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/net.py creates network namespaces: run it as root")
    sh(f"cd {ROOT} && cargo build --release -q -p lamina-cli -p lamina-bench-peers")
    build_tenders()
    peers = {"linux": Linux(), "spt": Lamina("spt"), "hvt": Lamina("hvt")}
    results = {name: [] for name in peers}
    try:
        # Round-robin, so that whatever else the machine does in the
        # meantime falls on every peer alike.
        for _ in range(args.runs):
            for name, peer in peers.items():
                results[name].append(measure_once(peer.ns, peer.addr, args))
    finally:
        for peer in peers.values():
            peer.close()
    # VM exits under load alone: one bulk echo on a fresh hvt tender.
    bulk_hvt = Lamina("hvt")
    measure_bulk = os.path.join(REL, "echo-load")
    sh(f"ip netns exec {bulk_hvt.ns} {measure_bulk} {bulk_hvt.addr}:7 --connections 1 --bytes {args.bytes}",
       capture_output=True)
    bulk_exits = bulk_hvt.close()
    bulk_log = open(bulk_hvt.log.name).read()
    frames = re.search(r"(\d+) frames sent", bulk_log)
    # VM exits at low load: round trips alone (one request at a time) on a
    # fresh hvt tender.
    rt_hvt = Lamina("hvt")
    sh(f"ip netns exec {rt_hvt.ns} {measure_bulk} {rt_hvt.addr}:7 --connections 0 --round-trips {args.round_trips}",
       capture_output=True)
    rt_exits = rt_hvt.close()
    median = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
              for name, runs in results.items()}
    lin_bulk, lin_rtt = median["linux"]
    print(f"echo, median of {args.runs} interleaved runs: bulk MB/s each way ({args.bytes / 1e6:.0f} MB), round trips/s")
    print(f"  linux (std-echo over veth)  {lin_bulk:8.1f} MB/s  {lin_rtt:8.0f} rt/s")
    for target in ("spt", "hvt"):
        bulk, rtt = median[target]
        line = f"  {target:4} (echo over tap)       {bulk:8.1f} MB/s  {rtt:8.0f} rt/s   ratio {bulk / lin_bulk:.2f}x bulk, {rtt / lin_rtt:.2f}x rt"
        print(line)
    if rt_exits is not None:
        print(f"  hvt at low load: {rt_exits} VM exits for {args.round_trips} round trips"
              f" ({rt_exits / args.round_trips:.2f} per round trip, start-up included)")
    if bulk_exits is not None and frames:
        sent = int(frames.group(1))
        print(f"  hvt under bulk load: {bulk_exits} VM exits for {sent} frames the guest sent"
              f" ({bulk_exits / sent:.3f} per frame) in one {args.bytes / 1e6:.0f} MB echo")


if __name__ == "__main__":
    main()
