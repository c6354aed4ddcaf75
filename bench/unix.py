#!/usr/bin/env python3
"""Benchmarks of the unix target (issue 2), each against a peer in the same run.

1. Idle CPU: the echo unikernel built for unix, idle for 10 s, against a
   plain std Rust echo server idle for the same 10 s.
2. Spawn to listening: from fork/exec until a TCP connect succeeds, echo on
   unix against the std Rust echo server; medians of N runs, alternating.

usage: bench/unix.py [--runs N] [--idle-seconds S]
"""
import argparse, os, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli", "-p", "lamina-bench-peers"],
                   cwd=ROOT, check=True)
    lamina = os.path.join(ROOT, "target", "release", "lamina")
    out = subprocess.run([lamina, "build", "--release", "echo"], cwd=ROOT, check=True,
                         stderr=subprocess.PIPE, text=True).stderr
    echo = out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]
    return echo, os.path.join(ROOT, "target", "release", "std-echo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(kind, binary, port):
    return [binary, f"--port={port}", "--log=warn"] if kind == "lamina" else [binary, str(port)]


def spawn_to_listening(cmd, port):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{cmd[0]} exited before listening")
    elapsed = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return elapsed


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def idle_cpu(cmd, port, seconds):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spawn_wait(port)
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    used = cpu_seconds(proc.pid) - before
    proc.kill()
    proc.wait()
    return 100.0 * used / seconds


def spawn_wait(port):
    for _ in range(1000):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit("server did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=10)
    args = ap.parse_args()
    echo, std_echo = build()
    peers = {"lamina": echo, "std": std_echo}

    print(f"idle CPU over {args.idle_seconds:.0f} s (after serving one connection)")
    idle = {}
    for kind, binary in peers.items():
        port = free_port()
        idle[kind] = idle_cpu(command(kind, binary, port), port, args.idle_seconds)
        print(f"  {kind:7} {idle[kind]:.2f}% CPU")
    print(f"  echo (unix) idle CPU: {idle['lamina']:.2f}% (goal: below 1%); std peer {idle['std']:.2f}%")

    times = {k: [] for k in peers}
    for _ in range(args.runs):
        for kind, binary in peers.items():
            port = free_port()
            times[kind].append(spawn_to_listening(command(kind, binary, port), port))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"spawn to listening, median of {args.runs} runs")
    for kind in peers:
        print(f"  {kind:7} {med[kind]:.2f} ms")
    print(f"  ratio echo-on-unix / std-echo: {med['lamina'] / med['std']:.2f}x")


if __name__ == "__main__":
    main()
