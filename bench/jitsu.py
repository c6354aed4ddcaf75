#!/usr/bin/env python3
"""Jitsu benchmarks (issue 13): how long a client waits for a unikernel
that is summoned by its DNS query, against a Linux process started on
demand, measured in the same run.

For each target (spt, hvt where /dev/kvm works) and network mode (user
mode on loopback; tap mode, as root, in a network namespace of its own
that the daemon's bridge, its taps and the client share), `lamina jitsu`
runs the website example behind several names:

1. cold: DNS query for a stopped service -> first byte of its page (the
   query's answer is held until the unikernel listens, then the client
   connects and sends GET /), median and p99 of --runs;
2. warm: the same while it runs;
3. paused: the same for a service in stop mode pause (SIGCONT, no boot),
   and the memory a paused service keeps (PSS of its tender and network);
4. the peer: the website built for unix (a Linux process), spawned on
   demand: spawn -> first byte of the same page. The ratio is
   cold / peer (below 1: the unikernel is summoned faster than a process
   starts).

usage: [sudo] bench/jitsu.py [--runs N] [--targets spt,hvt] [--modes user,tap]
"""
import argparse, json, os, random, shutil, signal, socket, statistics, struct, subprocess, sys
import tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
LAMINA = os.path.join(REL, "lamina")


def sh(*args, **kw):
    return subprocess.run(args, cwd=ROOT, check=True, **kw)


def built_image(target, app):
    out = sh(LAMINA, "build", "--release", "-t", target, app, stderr=subprocess.PIPE, text=True).stderr
    return out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dns_query(port, name):
    """One A query over UDP: (address, seconds)."""
    qid = random.randrange(65536)
    question = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    message = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        t0 = time.perf_counter()
        s.sendto(message, ("127.0.0.1", port))
        reply, _ = s.recvfrom(1500)
        t1 = time.perf_counter()
    rcode = reply[3] & 0xF
    if rcode != 0 or struct.unpack(">H", reply[6:8])[0] < 1:
        sys.exit(f"{name}: DNS answer with rcode {rcode} and no address")
    return socket.inet_ntoa(reply[-4:]), t1 - t0


def first_byte(address, port, deadline=30.0):
    """Connects (retrying while refused, for the peer) and GETs /: seconds
    to the first byte of the answer."""
    t0 = time.perf_counter()
    while True:
        try:
            s = socket.create_connection((address, port), timeout=deadline)
            break
        except ConnectionRefusedError:
            if time.perf_counter() - t0 > deadline:
                raise
            time.sleep(0.0002)
    with s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        if not s.recv(1):
            sys.exit(f"{address}:{port}: closed without an answer")
        t1 = time.perf_counter()
        while s.recv(65536):
            pass
    return t1 - t0


class Jitsu:
    def __init__(self, target, services, settings="", port_spec="{port}:80"):
        self.dir = tempfile.mkdtemp(prefix="jitsu-bench-")
        self.dns, self.status = free_port(), free_port()
        config = f'dns = "127.0.0.1:{self.dns}"\nstatus = "127.0.0.1:{self.status}"\n{settings}\n'
        for name, address, port, extra in services:
            config += (f'[[service]]\nname = "{name}"\napp = "website"\naddress = "{address}"\n'
                       f'ports = ["{port_spec.format(port=port)}"]\nmem = 32\ntarget = "{target}"\n{extra}\n')
        path = os.path.join(self.dir, "jitsu.toml")
        with open(path, "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen([LAMINA, "jitsu", path], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=self.log, start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline:
            self.log.seek(0)
            if "jitsu: answering DNS" in self.log.read():
                return
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit(f"lamina jitsu failed:\n{self.log.read()}")
            time.sleep(0.05)
        sys.exit("lamina jitsu did not start")

    def state(self, name):
        with socket.create_connection(("127.0.0.1", self.status)) as s:
            s.sendall(b"GET /json HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        page = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return next(x for x in page["services"] if x["name"] == name)

    def wait_state(self, name, state, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            entry = self.state(name)
            if entry["state"] == state:
                return entry
            time.sleep(0.02)
        sys.exit(f"{name} never became {state}")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def summary(samples):
    ms = sorted(s * 1e3 for s in samples)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return statistics.median(ms), p99


TAP_SETTINGS = 'network = "tap"\nbridge = "ljbench"\nbridge-address = "10.79.0.1/24"'


def measure_jitsu(target, runs, mode):
    if mode == "tap":
        port, net, settings, spec = 80, "10.79.0", TAP_SETTINGS, "80"
        cold_addresses = [f"{net}.{i + 10}" for i in range(4)]
        warm_address, pause_address = f"{net}.20", f"{net}.21"
    else:
        port, settings, spec = free_port(), "", "{port}:80"
        cold_addresses = [f"127.0.30.{i + 1}" for i in range(4)]
        warm_address, pause_address = "127.0.31.1", "127.0.31.2"
    cold_names = [(f"c{i}.bench.test", a, port, "ttl = 0.05\nidle = 0.1") for i, a in enumerate(cold_addresses)]
    services = cold_names + [
        ("warm.bench.test", warm_address, port, "ttl = 3600"),
        ("pause.bench.test", pause_address, port, 'ttl = 0.05\nidle = 0.1\nstop = "pause"'),
    ]
    jitsu = Jitsu(target, services, settings, spec)
    try:
        cold, cold_dns, warm, paused = [], [], [], []
        for i in range(runs):
            name = cold_names[i % len(cold_names)][0]
            jitsu.wait_state(name, "stopped")
            t0 = time.perf_counter()
            address, dns_time = dns_query(jitsu.dns, name)
            first_byte(address, port)
            cold.append(time.perf_counter() - t0)
            cold_dns.append(dns_time)
        dns_query(jitsu.dns, "warm.bench.test")
        for _ in range(runs):
            t0 = time.perf_counter()
            address, _ = dns_query(jitsu.dns, "warm.bench.test")
            first_byte(address, port)
            warm.append(time.perf_counter() - t0)
        address, _ = dns_query(jitsu.dns, "pause.bench.test")
        first_byte(address, port)
        memory = []
        for _ in range(runs):
            entry = jitsu.wait_state("pause.bench.test", "paused")
            memory.append(entry["memory_kib"] or 0)
            t0 = time.perf_counter()
            address, _ = dns_query(jitsu.dns, "pause.bench.test")
            first_byte(address, port)
            paused.append(time.perf_counter() - t0)
        boots = [jitsu.state(n[0])["up_in_ms_median"] for n in cold_names]
        return cold, cold_dns, warm, paused, statistics.median(memory), statistics.median(boots)
    finally:
        jitsu.stop()


def measure_peer(runs):
    """The website as a Linux process, spawned on demand: spawn -> first byte."""
    binary = built_image("unix", "website")
    samples = []
    for _ in range(runs):
        port = free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, f"--port={port}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            first_byte("127.0.0.1", port)
            samples.append(time.perf_counter() - t0)
        finally:
            proc.kill()
            proc.wait()
    return samples


def report(target, mode, runs, peer_median):
    cold, cold_dns, warm, paused, memory, boot = measure_jitsu(target, runs, mode)
    c, c99 = summary(cold)
    d, _ = summary(cold_dns)
    w, w99 = summary(warm)
    p, p99 = summary(paused)
    label = f"{target} {mode}-mode"
    print(f"{label}: cold query -> first byte median {c:.2f} ms, p99 {c99:.2f} ms "
          f"({c / peer_median:.2f}x the peer; the DNS answer itself {d:.2f} ms, summons -> listening {boot:.2f} ms)")
    print(f"{label}: warm query -> first byte median {w:.2f} ms, p99 {w99:.2f} ms")
    print(f"{label}: paused query -> first byte median {p:.2f} ms, p99 {p99:.2f} ms; "
          f"a paused website keeps {memory / 1024:.1f} MiB (PSS), a destroyed one 0", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--targets", default="spt,hvt")
    parser.add_argument("--modes", default="user,tap")
    # Internal: the tap-mode part, run inside its namespace.
    parser.add_argument("--tap-inside", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    targets = args.targets.split(",")
    if args.tap_inside is not None:
        for target in targets:
            report(target, "tap", args.runs, args.tap_inside)
        return
    sh("cargo", "build", "--release", "-q", "-p", "lamina-cli", "-p", "lamina-usernet")
    sh("cargo", "tenders", "-q")  # as `lamina` builds them: static
    if "hvt" in targets and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("hvt skipped: /dev/kvm cannot be opened")
        targets.remove("hvt")
    peer = measure_peer(args.runs)
    peer_median, peer_p99 = summary(peer)
    print(f"peer: the website as a Linux process, spawn -> first byte: median {peer_median:.2f} ms, p99 {peer_p99:.2f} ms ({args.runs} runs)")
    modes = args.modes.split(",")
    if "user" in modes:
        for target in targets:
            report(target, "user", args.runs, peer_median)
    if "tap" in modes:
        if os.geteuid() != 0:
            print("tap mode skipped: it needs root (a bridge and taps); run with sudo")
            return
        netns = f"ljbench-{os.getpid()}"
        sh("ip", "netns", "add", netns)
        try:
            sh("ip", "-n", netns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__),
               "--runs", str(args.runs), "--targets", ",".join(targets), "--tap-inside", str(peer_median))
        finally:
            subprocess.run(["ip", "netns", "delete", netns])


if __name__ == "__main__":
    main()
