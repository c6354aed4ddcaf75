#!/usr/bin/env python3
"""How many idle TLS connections a website unikernel holds, and in how much
memory (issue 14: "10,000 idle TLS connections fit in a stated guest size").

For each guest size in --mem (MiB, ascending), boots the website (with a
development certificate baked in) on a tap in a namespace, opens
--connections TLS connections from Python's ssl beside it (TLS 1.3, each
handshake complete, then silent), and then checks that the unikernel still
serves: a new HTTPS request gets 200, and every 100th idle connection
still answers a GET. Prints, per size, how many connections opened and
whether it held; the smallest size that held is the figure.

Prints the time each 1,000 connections took to open, and the client's CPU
for them, as it goes.

usage: sudo bench/tls_idle.py [--target hvt|spt] [--connections N] [--mem 64,96,128]
                              [--max-connections N] [--image IMAGE --ca CA]
"""
import argparse, os, resource, subprocess, sys, tempfile, threading, time

from netns import REL, ROOT, build_tenders, delete, sh, tap_namespace, tender_path

CLIENT = r'''
import resource, socket, ssl, sys, time
n, ca = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
conns, failed = [], ""
start = batch_start = time.time()
batch_cpu = time.process_time()
for i in range(n):
    try:
        raw = socket.create_connection(("10.213.0.2", 443), timeout=10)
        conns.append(ctx.wrap_socket(raw, server_hostname="localhost"))
    except Exception as e:
        failed = f"{type(e).__name__}: {e}"
        break
    if (i + 1) % 1000 == 0:
        now, cpu = time.time(), time.process_time()
        print(f"  connections {i - 998}-{i + 1}: {now - batch_start:.1f} s (client CPU {cpu - batch_cpu:.1f} s)",
              flush=True)
        batch_start, batch_cpu = now, cpu
opened = len(conns)
print(f"opened {opened} in {time.time() - start:.1f} s", flush=True)
time.sleep(2)
# A new connection, then every 100th idle one asks for the page.
fresh_ok = False
try:
    s = ctx.wrap_socket(socket.create_connection(("10.213.0.2", 443), timeout=10), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    fresh_ok = s.recv(64).startswith(b"HTTP/1.1 200")
except Exception as e:
    failed = failed or f"fresh: {e}"
answered = asked = 0
for s in conns[::100]:
    asked += 1
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(10)
        answered += s.recv(64).startswith(b"HTTP/1.1 200")
    except Exception:
        pass
print(f"RESULT opened={opened} fresh={int(fresh_ok)} idle_answered={answered}/{asked} {failed}", flush=True)
'''


def trial(target, mem, connections, max_connections, ca, image, console=None):
    ns = "lamina-tls-idle"
    tap_namespace(ns, "10.213.0.1/24")
    tender = subprocess.Popen(["ip", "netns", "exec", ns, tender_path(target), f"--mem={mem}",
                               "--net:service=tap0", image, "--ipv4=10.213.0.2/24",
                               f"--max-connections={max_connections}", "--idle-timeout=900s"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Drained as it comes: a full pipe would stop the tender at its next
    # console write, and the guest with it.
    log = []

    def drain():
        for line in tender.stdout:
            log.append(line)
            if "max-connections" in line:
                print(f"  guest: {line.strip()}", flush=True)
    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        time.sleep(1)
        client = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", CLIENT, str(connections), ca],
                                  stdout=subprocess.PIPE, text=True)
        lines = []
        for line in client.stdout:
            lines.append(line)
            if line.startswith("  connections"):
                print(line, end="", flush=True)
        client.wait()
        out = "".join(lines)
        result = [line for line in out.splitlines() if line.startswith("RESULT")]
        took = [line for line in out.splitlines() if line.startswith("opened ")]
        if result and took:
            result[0] += f" ({took[0]})"
        alive = tender.poll() is None
        return (result[0] if result else "RESULT none " + out[-300:]), alive
    finally:
        tender.kill()
        tender.wait()
        drainer.join(timeout=5)
        if console:
            with open(console, "w") as f:
                f.write("".join(log))
        if tender.returncode not in (None, -9):
            print(f"  the unikernel ended: {''.join(log)[-600:]}")
        delete(ns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="hvt", choices=["hvt", "spt"])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--mem", default="80,96,128,192")
    ap.add_argument("--max-connections", type=int, help="the website's (default: --connections + 100)")
    ap.add_argument("--image", help="a website image to run instead of building one (needs --ca)")
    ap.add_argument("--ca", help="with --image: the CA certificate its baked certificate chains to")
    ap.add_argument("--console", help="write the unikernel's console output (of the last size tried) here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (taps and namespaces)")
    if bool(args.image) != bool(args.ca):
        sys.exit("--image and --ca go together")
    lamina = os.path.join(REL, "lamina")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lamina-cli"], cwd=ROOT,
                   check=True)
    build_tenders()
    if args.image:
        image, ca = args.image, args.ca
    else:
        tmp = tempfile.mkdtemp(prefix="lamina-tls-idle-")
        certs, ca_dir = os.path.join(tmp, "certs"), os.path.join(tmp, "ca")
        subprocess.run([lamina, "tls", "dev-cert", "localhost", "10.213.0.2", "--dir", certs, "--ca-dir", ca_dir],
                       check=True, stdout=subprocess.DEVNULL)
        ca = os.path.join(ca_dir, "ca.crt")
        env = dict(os.environ, LAMINA_TLS_DIR=certs, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "bench-tls"))
        built = subprocess.run([lamina, "build", "--release", "-t", args.target, "website"], cwd=ROOT, env=env,
                               check=True, stderr=subprocess.PIPE, text=True).stderr
        image = built.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]
        print(f"image {image}, CA {ca}", flush=True)
    max_connections = args.max_connections or args.connections + 100
    held = None
    for mem in [int(m) for m in args.mem.split(",")]:
        result, alive = trial(args.target, mem, args.connections, max_connections, ca, image, args.console)
        ok = (f"opened={args.connections} " in result and "fresh=1" in result and alive
              and result.split("idle_answered=")[1].split("/")[0] == result.split("/")[1].split()[0])
        print(f"{args.target} --mem={mem}: {result.removeprefix('RESULT ')}; unikernel {'alive' if alive else 'DEAD'}"
              f" -> {'held' if ok else 'did not hold'}", flush=True)
        if ok:
            held = mem
            break
    if held is None:
        sys.exit(f"{args.connections} idle TLS connections did not fit in any of {args.mem} MiB")
    print(f"{args.connections} idle TLS 1.3 connections fit in a {held} MiB {args.target} guest "
          f"(and it still serves new and idle clients)")


if __name__ == "__main__":
    main()
