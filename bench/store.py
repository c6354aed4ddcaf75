#!/usr/bin/env python3
"""Storage benchmarks (issue 15). Block part: 4 KiB sequential and random
reads and writes by a unikernel (tests/guests/disk, `--mode=bench`) on
spt and hvt, against fio on the same backing file from the host, printed as
ratios of the medians of --runs.

Both go through the host's page cache, which is warmed first: the guest's
tender uses buffered pread64/pwrite64 on the file, and fio runs the same
way (ioengine=psync, invalidate=0, no fsync), one request at a time. The
guest times its own loop with its monotonic clock (boot excluded); fio
reports its job's IOPS. The file is filled with random bytes first. On
hvt the tender's --x-stats gives the VM exits per block request (with the
block ring, the console and clock calls of a whole run over its requests).

Key-value part (--kv): durable writes/s and reads/s of lamina-store in a
unikernel (tests/guests/storeload, `--mode=bench`) on spt and hvt against
Redis 7 with `appendonly yes` and `appendfsync always`, its appendonly file
in a temporary directory under --dir, the filesystem of the guest's disk
image. The path compared, the closest to like for like without HTTP: the
guest times its own loop of `store.set` (one commit, answered once written
and flushed: fdatasync in the tender) and then `store.get`, over --kv-keys
keys, on a freshly formatted image, the store keeping --value-cache-mib
(8) of values over 512 B for gets (`Store::set_value_cache`; Redis holds
every value in memory); Redis is timed by redis-benchmark with
one client and no pipelining (-c 1 -P 1) over a unix socket, SET then GET
over the same number of random keys, each on a fresh server. Redis's
figures include a socket round trip per request that the guest's loop does
not pay; the guest's include a tender exit per block transfer and flush.
Value sizes 100 B and 4 KiB. The guest's disk is a 256 MiB image of zeroes
written to the file system, as `lamina run --block` and `lamina store
format --size` make one (not sparse: the first write to a sparse file's
block allocates it, and the fdatasync after it commits the journal too).
An untimed extra run of each side under `strace -c -f` counts the
fsync/fdatasync calls per SET.

With --ram-disk (root) both run on an ext4 file system the script makes
on a loop device over a file in /dev/shm, and removes: an fdatasync there
still commits ext4's journal and flushes the device, but the device is
memory, so each costs the same every time. On this host's virtual disk one
Redis run's SETs ranged from 196/s to 5,249/s within a minute, which made
the durable-write ratios a draw of the disk's mood; on the RAM disk they
compare the software paths.

usage: bench/store.py [--block] [--kv] [--runs N] [--ops N] [--read-ops N] [--mib M] [--kv-ops N] [--value-cache-mib M] [--dir DIR | --ram-disk] [--targets spt,hvt]
(neither --block nor --kv: both)
"""
import argparse, contextlib, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

from netns import REL, ROOT, build_tenders, image, tender_path

PATTERNS = {"seq-read": "read", "seq-write": "write", "rand-read": "randread", "rand-write": "randwrite"}
IO = 4096


def guest_iops(target, disk, path, pattern, ops, size):
    """The guest's IOPS, and on hvt its VM exits per request (from the
    tender's --x-stats: exits to the tender over block ring requests)."""
    stats = ["--x-stats"] if target == "hvt" else []
    run = subprocess.run([tender_path(target), "--mem=64", *stats, f"--block:storage={path}",
                          "--block-sector-size:storage=4096", disk, "--mode=bench", f"--pattern={pattern}",
                          f"--bytes={size}", f"--io={IO}", f"--ops={ops}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    out = run.stdout
    m = re.search(r"disk bench \S+: (\d+) ops of \d+ bytes in (\d+) ns", out)
    if not m:
        sys.exit(f"{target} {pattern}: no result in:\n{out}")
    iops = int(m.group(1)) / (int(m.group(2)) / 1e9)
    exits = None
    if stats:
        e = re.search(r"(\d+) VM exits to the tender", run.stderr)
        r = re.search(r"block ring: (\d+) requests", run.stderr)
        block_calls = sum(int(n) for n in re.findall(r"block_(?:read|write|flush) (\d+)", run.stderr))
        requests = (int(r.group(1)) if r else 0) + block_calls
        if e and requests:
            exits = int(e.group(1)) / requests
    return iops, exits


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
        print(f"block: {IO}-byte transfers, {args.read_ops} per read run and {args.ops} per write run, "
              f"over {args.mib} MiB of {f.name}; "
              f"medians of {args.runs} runs (IOPS; MB/s = IOPS x {IO} / 1e6)")
        for pattern in PATTERNS:
            # Reads from the page cache take about a µs: 20,000 of them
            # were a run of 15-30 ms, whose medians moved by half from one
            # invocation to the next on this host. Writes stay fewer: more
            # dirty the page cache until the host's writeback throttles
            # every writer at once.
            ops = args.read_ops if "read" in pattern else args.ops
            results = {name: [] for name in ["fio"] + targets}
            exits = {}
            for _ in range(args.runs):  # alternating, so drift hits all alike
                results["fio"].append(fio_iops(f.name, pattern, ops, size))
                for t in targets:
                    iops, per_request = guest_iops(t, disks[t], f.name, pattern, ops, size)
                    results[t].append(iops)
                    if per_request is not None:
                        exits.setdefault(t, []).append(per_request)
            fio = statistics.median(results["fio"])
            line = [f"{pattern:10} fio {fio:9.0f} IOPS ({fio * IO / 1e6:6.1f} MB/s)"]
            for t in targets:
                m = statistics.median(results[t])
                line.append(f"{t} {m:9.0f} IOPS ({m * IO / 1e6:6.1f} MB/s) = {m / fio:.2f}x fio")
                if t in exits:
                    line[-1] += f" ({statistics.median(exits[t]):.4f} VM exits per request)"
                print(f"  {t} {pattern} runs: {' '.join(f'{x:.0f}' for x in results[t])}", file=sys.stderr)
            print("  " + "; ".join(line))


KV_SIZES = [100, 4096]


def guest_kv(target, app, dir, size, ops, keys, value_cache, strace=None):
    """(sets/s, gets/s) of the guest's timed loops on a fresh image; with
    `strace`, that file receives the tender's `strace -c` summary."""
    with tempfile.NamedTemporaryFile(dir=dir, prefix="lamina-kv-bench-") as disk:
        # Zeroes written, as `lamina run --block NAME=FILE:SIZE` and
        # `lamina store format --size` make a disk (see write_zeroes in
        # core/src/device/file.rs): a sparse image made every durable set
        # pay the host file system's block allocation.
        chunk = bytes(1 << 20)
        for _ in range(256):
            disk.write(chunk)
        disk.flush()
        os.fsync(disk.fileno())
        cmd = [tender_path(target), "--mem=64", f"--block:storage={disk.name}", app,
               "--mode=bench", f"--value-size={size}", f"--ops={ops}", f"--keys={keys}",
               f"--value-cache-bytes={value_cache}"]
        if strace:
            cmd = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", strace] + cmd
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
    rates = {}
    for op in ("set", "get"):
        m = re.search(rf"storeload bench {op} \d+: (\d+) ops in (\d+) ns", out)
        if not m:
            sys.exit(f"{target} kv bench: no {op} result in:\n{out}")
        rates[op] = int(m.group(1)) / (int(m.group(2)) / 1e9)
    return rates["set"], rates["get"]


class Redis:
    """redis-server with appendonly yes, appendfsync always, in a temporary
    directory under `dir`, on a unix socket only; stopped on exit."""

    def __init__(self, dir):
        self.dir = tempfile.mkdtemp(dir=dir, prefix="lamina-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")

    def __enter__(self):
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", self.sock, "--dir", self.dir,
                                      "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                      "--daemonize", "no", "--logfile", os.path.join(self.dir, "log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(self.sock)
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        sys.exit("redis-server did not answer on its socket")

    def __exit__(self, *_):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def bench(self, tests, size, ops, keys):
        out = subprocess.run(["redis-benchmark", "-s", self.sock, "-c", "1", "-P", "1", "-n", str(ops),
                              "-d", str(size), "-r", str(keys), "-t", tests, "--csv"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
        rates = {}
        for line in out.splitlines():
            fields = [f.strip('"') for f in line.split(",")]
            if fields[0] in ("SET", "GET"):
                rates[fields[0]] = float(fields[1])
        return rates


def redis_kv(dir, size, ops, keys):
    with Redis(dir) as redis:
        rates = redis.bench("set,get", size, ops, keys)
    return rates["SET"], rates["GET"]


def fsyncs(summary):
    """fsync + fdatasync calls in a `strace -c` summary."""
    with open(summary) as f:
        return sum(int(l.split()[3]) for l in f if l.split()[-1:] in (["fsync"], ["fdatasync"]))


def redis_fsyncs(dir, size, ops, keys, summary):
    with Redis(dir) as redis:
        tracer = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", summary,
                                   "-p", str(redis.proc.pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached
        redis.bench("set", size, ops, keys)
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
    return fsyncs(summary)


def kv(args):
    targets = args.targets.split(",")
    apps = {t: image(t, "tests/guests/storeload") for t in targets}
    version = subprocess.run(["redis-server", "--version"], stdout=subprocess.PIPE, text=True).stdout.split()[2]
    print(f"kv: durable SETs then GETs, {args.kv_ops} each over {args.kv_keys} keys, medians of {args.runs} runs; "
          f"Redis {version} (appendonly yes, appendfsync always) and the guest's image both in {args.dir}")
    print("  path: the guest times its own loop of store.set (commit + flush) and store.get, no network; "
          "Redis: redis-benchmark -c 1 -P 1 over a unix socket (a round trip per request)")
    print(f"  the store keeps {args.value_cache >> 20} MiB of values over 512 B for gets (--value-cache-mib; "
          f"the values of 4 KiB take {4096 * args.kv_keys / 2**20:.1f} MiB), as Redis holds all in memory")
    for size in KV_SIZES:
        results = {name: {"set": [], "get": []} for name in ["redis"] + targets}
        for _ in range(args.runs):  # alternating, so drift hits all alike
            for name in ["redis"] + targets:
                if name == "redis":
                    w, r = redis_kv(args.dir, size, args.kv_ops, args.kv_keys)
                else:
                    w, r = guest_kv(name, apps[name], args.dir, size, args.kv_ops, args.kv_keys, args.value_cache)
                results[name]["set"].append(w)
                results[name]["get"].append(r)
        with tempfile.TemporaryDirectory() as tmp:
            summary = os.path.join(tmp, "strace")
            per_write = {"redis": redis_fsyncs(args.dir, size, args.kv_ops, args.kv_keys, summary) / args.kv_ops}
            for t in targets:
                guest_kv(t, apps[t], args.dir, size, args.kv_ops, args.kv_keys, args.value_cache, strace=summary)
                per_write[t] = fsyncs(summary) / args.kv_ops
        for op in ("set", "get"):
            redis = statistics.median(results["redis"][op])
            line = [f"{op} {size:5} B: redis {redis:8.0f}/s"]
            if op == "set":
                line[0] += f" ({per_write['redis']:.2f} fsyncs/write)"
            for t in targets:
                m = statistics.median(results[t][op])
                note = f" ({per_write[t]:.2f} fsyncs/write)" if op == "set" else ""
                line.append(f"{t} {m:8.0f}/s = {m / redis:.2f}x redis{note}")
                print(f"  {t} {op} {size} runs: {' '.join(f'{x:.0f}' for x in results[t][op])}", file=sys.stderr)
            print(f"  redis {op} {size} runs: {' '.join(f'{x:.0f}' for x in results['redis'][op])}", file=sys.stderr)
            print("  " + "; ".join(line))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ops", type=int, default=20000, help="transfers per block write run")
    ap.add_argument("--read-ops", type=int, default=300000, help="transfers per block read run")
    ap.add_argument("--mib", type=int, default=256, help="bytes of the backing file the transfers cover")
    ap.add_argument("--dir", default="/var/tmp", help="where the backing file goes (a real disk, not tmpfs)")
    ap.add_argument("--targets", default="spt,hvt")
    ap.add_argument("--block", action="store_true", help="the block benchmark")
    ap.add_argument("--kv", action="store_true", help="the key-value benchmark against Redis")
    ap.add_argument("--kv-ops", type=int, default=2000, help="SETs (and as many GETs) per kv run")
    ap.add_argument("--kv-keys", type=int, default=1000, help="distinct keys of the kv runs")
    ap.add_argument("--value-cache-mib", type=int, default=8,
                    help="MiB of values over 512 B the guest's store keeps for gets (0: each get reads the disk)")
    ap.add_argument("--ram-disk", action="store_true",
                    help="run on ext4 over a loop device in /dev/shm (root): fdatasync costs the same every time")
    args = ap.parse_args()
    args.value_cache = args.value_cache_mib << 20
    if not (args.block or args.kv):
        args.block = args.kv = True
    build_tenders()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli"],
                   cwd=ROOT, check=True)
    with (RamDisk(args.mib) if args.ram_disk else contextlib.nullcontext()) as ram:
        if ram:
            args.dir = ram.mount
            print(f"on a RAM disk: ext4 on {ram.loop} over {ram.backing}")
        if args.block:
            block(args)
        if args.kv:
            kv(args)


class RamDisk:
    """An ext4 file system on a loop device over a file in /dev/shm,
    mounted in a temporary directory; all of it removed on exit."""

    def __init__(self, mib):
        self.size = max(1024, 4 * mib) << 20  # the block file, Redis's and the kv images

    def __enter__(self):
        fd, self.backing = tempfile.mkstemp(dir="/dev/shm", prefix="lamina-ram-disk-")
        os.ftruncate(fd, self.size)
        os.close(fd)
        self.loop = self.mount = None
        try:
            self.loop = subprocess.run(["losetup", "--find", "--show", self.backing], check=True,
                                       stdout=subprocess.PIPE, text=True).stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", self.loop], check=True)
            self.mount = tempfile.mkdtemp(prefix="lamina-ram-disk-")
            subprocess.run(["mount", self.loop, self.mount], check=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_):
        if self.mount:
            subprocess.run(["umount", self.mount], check=False)
            os.rmdir(self.mount)
        if self.loop:
            subprocess.run(["losetup", "--detach", self.loop], check=False)
        os.unlink(self.backing)


if __name__ == "__main__":
    main()
