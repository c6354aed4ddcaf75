#!/usr/bin/env python3
"""kill -9 during lamina-store writes (issue 15): N cycles (default 1000)
per target of: boot the `storeload` guest (tests/guests/storeload) on spt
or hvt over one disk image, wait a random 20-500 ms into its write load,
`kill -9` the tender, boot again. Each boot first mounts the store and
checks every key and value against what the workload's acknowledged steps
must have left, then writes on.

The workload is deterministic from --seed: sets of 0 bytes to 1 MiB (most
inline in the log, some over 256 KiB spanning extents), removes, batches
of 2-6 keys over 48 keys, so that space is reused and checkpoints compact
the log as it runs. The guest prints `ack I` after each commit returns
(durable: written and flushed); the script keeps the last one it saw before
the kill and passes it to the next boot as --verify-through=I. That boot
rebuilds the state after steps 0..=I and compares the whole store with it
(every key listed, every value read): equal, or equal to the state one step
later (the commit under way reached the disk whole before the kill) is a
pass; anything else (a lost acknowledged write, part of a batch, a value
that differs, a mount that fails) is a failure, and the target's run stops
there with the console of the failing boot.

What a kill -9 tests, and what it does not: the tender dies at once, but
every write it made to the image is in the host's page cache and stays
there, so this checks the store's mount and log replay after the commit
under way was cut at any point (and the tender's handling of it), not the
loss of unflushed writes. Power-loss style loss (unflushed writes dropped,
the last one torn) is what store/tests/crash.rs covers, at every write point
of a scripted workload over a fault-injecting device.

Prints per target: kills, steps acknowledged, keys and bytes checked over
all boots, failures (must be 0), and the store's mount time after a crash
(the guest's own clock around Store::mount) and the host's time from exec
to the verdict.

Run as root (hvt needs /dev/kvm). The short version in CI is
cli/tests/crash.rs (20 kills per target).

usage: bench/crash.py [--kills N] [--targets spt,hvt] [--seed S] [--dir DIR]
"""
import argparse, os, random, re, statistics, subprocess, sys, tempfile, threading, time

from netns import REL, ROOT, build_tenders, image, tender_path

APP = "tests/guests/storeload"


class Boot:
    """One boot of the guest, its console read by a thread (so the pipe
    never fills and stalls the guest)."""

    def __init__(self, target, img, disk, seed, acked, formatted, extra=()):
        cmd = [tender_path(target), "--mem=64", f"--block:storage={disk}", img,
               "--mode=crash", f"--seed={seed}", *extra]
        if acked is not None:
            cmd.append(f"--verify-through={acked}")
        if formatted:
            cmd.append("--formatted")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.verdict = None
        self.verdict_at = None
        self.has_verdict = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.verdict is None and line.startswith("storeload verify: "):
                self.verdict, self.verdict_at = line, time.monotonic()
                self.has_verdict.set()
        self.has_verdict.set()

    def kill_after(self, seconds):
        """SIGKILL `seconds` after the verdict; whether it was still running."""
        self.has_verdict.wait(120)
        time.sleep(seconds)
        alive = self.proc.poll() is None
        self.proc.kill()
        self.finish()
        return alive

    def finish(self):
        if not self.has_verdict.wait(120):
            self.proc.kill()
        self.proc.wait()
        self.reader.join()

    def acks(self):
        return [int(m.group(1)) for m in map(re.compile(r"ack (\d+)$").match, self.lines) if m]

    def mount_us(self):
        for line in self.lines:
            m = re.match(r"storeload: mounted in (\d+) us", line)
            if m:
                return int(m.group(1))
        return None

    def checked(self):
        m = re.search(r"\((\d+) keys, (\d+) bytes\)", self.verdict or "")
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def run(target, img, args):
    rng = random.Random(f"{args.seed}-{target}")
    fd, disk = tempfile.mkstemp(dir=args.dir, prefix="lamina-crash-")
    os.ftruncate(fd, args.mib << 20)
    os.close(fd)
    acked, formatted = None, False
    kills = failures = keys = bytes_ = whole = 0
    generations = []
    mount_us, to_verdict = [], []
    try:
        for cycle in range(args.kills):
            boot = Boot(target, img, disk, args.seed, acked, formatted)
            alive = boot.kill_after(rng.uniform(0.020, 0.500))
            if not (boot.verdict or "").startswith("storeload verify: ok") or not alive:
                failures += 1
                why = "exited by itself" if boot.verdict and not alive else boot.verdict
                print(f"{target}: FAILURE at boot {cycle} (--verify-through={acked}): {why}\n  "
                      + "\n  ".join(boot.lines[-40:]), file=sys.stderr)
                break
            kills += 1
            if cycle and boot.mount_us() is not None:  # the first boot formats a blank disk
                mount_us.append(boot.mount_us())
                to_verdict.append(boot.verdict_at - boot.started)
            whole += "was on disk whole" in boot.verdict
            generations += [int(m.group(1)) for m in map(re.compile(r"storeload: mounted in .*\(generation (\d+),").match,
                                                         boot.lines) if m]
            k, b = boot.checked()
            keys, bytes_ = keys + k, bytes_ + b
            formatted = formatted or "storeload: formatted" in boot.lines
            acked = max(boot.acks(), default=acked)
            if (cycle + 1) % 100 == 0:
                print(f"  {target}: {cycle + 1} kills, acked through step {acked}", file=sys.stderr)
        if not failures:
            last = Boot(target, img, disk, args.seed, acked, formatted, ["--steps=0"])
            last.finish()
            if not (last.verdict or "").startswith(f"storeload verify: ok through step {acked}"):
                failures += 1
                print(f"{target}: FAILURE at the final check: {last.verdict}", file=sys.stderr)
    finally:
        os.unlink(disk)
    steps = 0 if acked is None else acked + 1
    mean = lambda xs: statistics.mean(xs) if xs else float("nan")
    print(f"{target}: {kills} kills, {steps} steps acknowledged and checked after the kill that followed, "
          f"{keys} keys / {bytes_ / 1e6:.1f} MB read back and compared over all boots, failures {failures}; "
          f"{whole} boots found the commit under way at the kill on disk whole; "
          f"{max(generations, default=0) - min(generations, default=0)} checkpoints between boots; "
          f"mount after a crash: mean {mean(mount_us) / 1000:.2f} ms (max {max(mount_us, default=0) / 1000:.2f} ms, "
          f"guest clock), exec to verdict mean {mean(to_verdict) * 1000:.1f} ms (host)")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=1000, help="kill -9 cycles per target")
    ap.add_argument("--targets", default="spt,hvt")
    ap.add_argument("--seed", type=int, default=1, help="the workload's seed (and the delays')")
    ap.add_argument("--mib", type=int, default=128, help="size of the disk image")
    ap.add_argument("--dir", default="/var/tmp", help="where the disk image goes (a real disk, not tmpfs)")
    args = ap.parse_args()
    build_tenders()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli"],
                   cwd=ROOT, check=True)
    targets = args.targets.split(",")
    images = {t: image(t, APP) for t in targets}
    print(f"kill -9 of the tender {args.kills} times per target, 20-500 ms into storeload's writes "
          f"(seed {args.seed}, {args.mib} MiB image in {args.dir})")
    failed = sum(run(t, images[t], args) for t in targets)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
