#!/usr/bin/env python3
"""HTTPS benchmark of the website (issue 14), against nginx serving the same
page with the same certificate, all in one run. The sibling of bench/http.py.

- nginx:   in a namespace, reached over a veth pair from a client namespace;
           once with 1 worker (the unikernel has 1 vCPU: the reference of
           every ratio) and once with `worker_processes auto` (a second line,
           for reference).
- spt/hvt: the website unikernel, built with the certificate baked in
           (LAMINA_TLS_DIR), in a namespace on a tap, client beside it.

One ECDSA P-256 certificate (`lamina tls dev-cert`, in a temporary
directory) for all; TLS 1.3 only, TLS_AES_128_GCM_SHA256 and X25519 forced
on the client side (tls-load's configuration; an OpenSSL configuration file
for wrk and openssl s_client, checked against every server before
measuring), and on nginx's side too. Each server serves the website's index
page; its body is checked against the file with curl --cacert (a verifying
client) first.

Figures, medians of --runs runs (the servers taking turns run by run):
1. full handshakes/s: tls-load (bench/peers) with --handshake-connections
   threads, each making a new connection per request: full TLS 1.3
   handshake, never resumed (no ticket or PSK offered), GET / with
   `Connection: close`. Not wrk: wrk resumes sessions on reconnect. The
   client shares the machine's cores with the server, so the server's CPU
   (its processes' user + system time, vCPU time included) is reported too,
   as a share of one core and as CPU time per handshake, which does not
   depend on the client.
2. keep-alive requests/s over TLS 1.3: wrk -t2 -c50 over https.
3. handshake latency p50/p99 at low load: tls-load with one connection
   (sequential new connections), from the TCP connection's establishment
   to the end of the client's handshake.
   Each server is measured in the order 2, 3, 1, then 2 again right after
   the handshake load ("after"): a server that has just closed thousands of
   connections (3 and 1 each make one per request) may hold them in
   TIME-WAIT for a while; a minute passes before its turn comes again.
4. the website image's size on spt and hvt with the certificate baked in
   and without (no certificate: HTTP only), and whether rustls's code is in
   the image without.

Exits non-zero when a figure could not be measured (it prints "n/a" for it,
never a made-up number).

usage: sudo bench/https.py [--seconds S] [--runs N] [--handshake-connections C] [--connections C]
"""
import argparse, os, re, resource, shutil, statistics, subprocess, sys, tempfile, time

from netns import REL, ROOT, build_tenders, delete, sh, tap_namespace, tender_path, veth_namespaces

INDEX = os.path.join(ROOT, "examples", "website", "site", "index.html")
NAME = "localhost"
CLIENT_NS, NGINX_NS = "lamina-https-client", "lamina-https-nginx"
NGINX_ADDR, GUEST_ADDR = "10.214.0.2", "10.215.0.2"
PORT_1, PORT_AUTO = 443, 8443

# What every client offers (wrk and openssl s_client read it through
# OPENSSL_CONF; tls-load is configured the same way in its source).
OPENSSL_CLIENT_CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = tls13_aes128_x25519
[tls13_aes128_x25519]
MinProtocol = TLSv1.3
MaxProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = X25519
"""


def cpu_seconds(pid):
    """User + system time of process `pid` (all its threads, vCPUs
    included) and of its children, in seconds; None once it is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        children = [pid] + [int(c) for task in os.listdir(f"/proc/{pid}/task")
                            for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        for p in children:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return total / tick


class Server:
    """A server under test: its namespace for the client, its address, its
    process (for its CPU time)."""

    def __init__(self, label, ns, addr, port, proc, log):
        self.label, self.ns, self.addr, self.port, self.proc, self.log = label, ns, addr, port, proc, log
        self.url = f"https://{addr}:{port}/"

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def nginx(tmp, cert, key, workers, port):
    """nginx in NGINX_NS with `workers` worker processes, TLS 1.3 only with
    the forced suite and group, one session ticket per handshake as the
    unikernel sends, keep-alive, serving the website's index page."""
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers}; daemon off; pid {tmp}/nginx-{port}.pid; error_log {tmp}/nginx-{port}.log;
events {{ worker_connections 4096; }}
http {{ access_log off; include /etc/nginx/mime.types; sendfile on; tcp_nodelay on; keepalive_requests 100000;
  server {{ listen {NGINX_ADDR}:{port} ssl; root {os.path.dirname(INDEX)};
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.3; ssl_ecdh_curve X25519;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256; ssl_conf_command NumTickets 1; }} }}
""")
    proc = subprocess.Popen(["ip", "netns", "exec", NGINX_NS, "nginx", "-c", conf])
    label = f"nginx ({workers} worker{'s' if workers != 1 else ''})" if workers != "auto" \
        else f"nginx (auto: {os.cpu_count()} workers)"
    return Server(label, CLIENT_NS, NGINX_ADDR, port, proc, os.path.join(tmp, f"nginx-{port}.log"))


def website(tmp, target, image):
    """The website image on `target` in a namespace of its own, on a tap."""
    ns = f"lamina-https-{target}"
    tap_namespace(ns, "10.215.0.1/24")
    log = os.path.join(tmp, f"{target}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, tender_path(target), "--mem=64",
                                 "--net:service=tap0", image, f"--ipv4={GUEST_ADDR}/24", "--log=warn"],
                                stdout=out, stderr=out)
    return Server(f"website on {target}", ns, GUEST_ADDR, 443, proc, log)


def check(server, ca, client_conf):
    """Fetches / with a verifying client and returns what OpenSSL negotiates
    with the forced client configuration, or raises why not."""
    body = os.path.join(os.path.dirname(client_conf), "body")
    for _ in range(100):
        got = sh(f"ip netns exec {server.ns} curl -s --cacert {ca} --resolve {NAME}:{server.port}:{server.addr}"
                 f" -o {body} -w %{{http_code}} https://{NAME}:{server.port}/", check=False,
                 capture_output=True).stdout
        if got == "200" or not server.alive():
            break
        time.sleep(0.1)
    if got != "200":
        raise RuntimeError(f"{server.label}: no verified 200 for / (curl said {got!r}); see {server.log}")
    if open(body, "rb").read() != open(INDEX, "rb").read():
        raise RuntimeError(f"{server.label}: / is not {INDEX}")
    out = subprocess.run(["ip", "netns", "exec", server.ns, "openssl", "s_client", "-connect",
                          f"{server.addr}:{server.port}", "-servername", NAME], input="", capture_output=True,
                         text=True, env={**os.environ, "OPENSSL_CONF": client_conf}).stdout
    cipher = re.search(r"New, (TLSv[\d.]+), Cipher is (\S+)", out)
    group = re.search(r"(?:Server|Peer) Temp Key: (\w+)", out)
    if not cipher or not group:
        raise RuntimeError(f"{server.label}: openssl s_client did not report the cipher and key exchange")
    return f"{cipher.group(1)} {cipher.group(2)} {group.group(1)}"


def measured(server, cmd, env=None):
    """Runs the client `cmd` in the server's client namespace: (stdout, wall
    seconds, server CPU seconds, client CPU seconds); stdout None if the
    client failed (its error is printed)."""
    before_server = cpu_seconds(server.proc.pid)
    before_client = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    run = subprocess.run(["ip", "netns", "exec", server.ns, *cmd], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    wall = time.monotonic() - start
    after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_server = cpu_seconds(server.proc.pid)
    client_cpu = (after_client.ru_utime + after_client.ru_stime) - (before_client.ru_utime + before_client.ru_stime)
    server_cpu = after_server - before_server if before_server is not None and after_server is not None else None
    if run.returncode != 0:
        print(f"  {server.label}: {' '.join(cmd[:1])} failed: {(run.stderr or run.stdout).strip()[-300:]}")
        return None, wall, server_cpu, client_cpu
    return run.stdout, wall, server_cpu, client_cpu


def handshakes(server, args):
    """(handshakes/s, server CPU share, server CPU ms per handshake, client CPU share) or None."""
    out, wall, server_cpu, client_cpu = measured(server, [os.path.join(REL, "tls-load"), f"{server.addr}:{server.port}",
                                                         "--connections", str(args.handshake_connections),
                                                         "--seconds", str(args.seconds), "--name", NAME])
    m = out and re.search(r"(\d+) full handshakes in [\d.]+ s: ([\d.]+) handshakes/s", out)
    if not m or server_cpu is None:
        return None
    count, rate = int(m.group(1)), float(m.group(2))
    return rate, server_cpu / wall, server_cpu / count * 1e3, client_cpu / wall


def keep_alive(server, args, client_conf):
    """(requests/s, server CPU share, server CPU µs per request, client CPU share) or None."""
    out, wall, server_cpu, client_cpu = measured(
        server, ["wrk", f"-t{min(2, args.connections)}", f"-c{args.connections}", f"-d{args.seconds}s", server.url],
        env={"OPENSSL_CONF": client_conf})
    if not out or server_cpu is None:
        return None
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if not rate or not requests or int(requests.group(1)) == 0:
        print(f"  {server.label}: wrk measured nothing: {out.strip()[-300:]}")
        return None
    if errors:
        print(f"  {server.label}: wrk: {errors.group(0)}")
        return None
    return float(rate.group(1)), server_cpu / wall, server_cpu / int(requests.group(1)) * 1e6, client_cpu / wall


def latency(server, args):
    """(handshake p50 ms, p99 ms) with one client, sequential connections, or None."""
    out, _, _, _ = measured(server, [os.path.join(REL, "tls-load"), f"{server.addr}:{server.port}",
                                     "--connections", "1", "--seconds", str(args.latency_seconds), "--name", NAME])
    m = out and re.search(r"p50 ([\d.]+) ms p99 ([\d.]+) ms", out)
    return (float(m.group(1)), float(m.group(2))) if m else None


def build_website(target, tls_dir, tmp):
    """Builds the website for `target` (release), with the certificates of
    `tls_dir` baked in or none; returns a copy of the image in `tmp` (the
    next build overwrites the original) and its size in bytes."""
    env = {k: v for k, v in os.environ.items() if k != "LAMINA_TLS_DIR"}
    if tls_dir:
        env["LAMINA_TLS_DIR"] = tls_dir
    out = subprocess.run([os.path.join(REL, "lamina"), "build", "--release", "-t", target, "website"], cwd=ROOT,
                         env=env, check=True, stderr=subprocess.PIPE, text=True).stderr
    built = out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]
    copy = os.path.join(tmp, f"website-{target}-{'tls' if tls_dir else 'plain'}")
    shutil.copyfile(built, copy)
    return copy, os.path.getsize(copy)


# A string only rustls's TLS 1.3 server code has (the context of the
# signature in CertificateVerify): is the TLS code in an image?
RUSTLS_MARK = b"TLS 1.3, server CertificateVerify"


def median(values):
    return statistics.median(values) if values and None not in values else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5, help="length of each throughput measurement")
    ap.add_argument("--runs", type=int, default=3, help="runs; the medians are reported")
    ap.add_argument("--handshake-connections", type=int, default=16,
                    help="tls-load threads, each making new connections one after another")
    ap.add_argument("--connections", type=int, default=50, help="wrk's keep-alive connections")
    ap.add_argument("--latency-seconds", type=int, default=3, help="length of the low-load latency measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/https.py creates network namespaces: run it as root")
    missing = [tool for tool in ("wrk", "nginx", "curl", "openssl") if not shutil.which(tool)]
    if missing:
        sys.exit(f"bench/https.py needs {', '.join(missing)} (Debian: apt-get install {' '.join(missing)})")
    # The website bakes examples/website/tls/ when LAMINA_TLS_DIR is unset
    # (scripts/main.sh makes one): then no image without a certificate.
    own_certs = os.path.join(ROOT, "examples", "website", "tls")
    plain_possible = not os.path.exists(own_certs)
    sh(f"cd {ROOT} && cargo build --release -q -p lamina-cli -p lamina-bench-peers")
    build_tenders()
    failed = False
    with tempfile.TemporaryDirectory(prefix="lamina-https-") as tmp:
        tls_dir, ca_dir = os.path.join(tmp, "tls"), os.path.join(tmp, "ca")
        sh(f"{os.path.join(REL, 'lamina')} tls dev-cert {NAME} --dir {tls_dir} --ca-dir {ca_dir}", capture_output=True)
        cert, key, ca = (os.path.join(tls_dir, f"{NAME}.crt"), os.path.join(tls_dir, f"{NAME}.key"),
                         os.path.join(ca_dir, "ca.crt"))
        client_conf = os.path.join(tmp, "openssl-client.cnf")
        with open(client_conf, "w") as f:
            f.write(OPENSSL_CLIENT_CONF)

        sizes, images = {}, {}
        for target in ("spt", "hvt"):
            plain, plain_size = build_website(target, None, tmp) if plain_possible else (None, None)
            images[target], tls_size = build_website(target, tls_dir, tmp)
            sizes[target] = (plain_size, tls_size, plain and RUSTLS_MARK in open(plain, "rb").read(),
                             RUSTLS_MARK in open(images[target], "rb").read())

        veth_namespaces(CLIENT_NS, NGINX_NS, "10.214.0.1/24", f"{NGINX_ADDR}/24", "s")
        # Wide enough for a run's connections without reusing a port in
        # TIME-WAIT (the server closes first, but wrk and tls-load may not).
        sh(f"ip netns exec {CLIENT_NS} sysctl -q net.ipv4.ip_local_port_range='1024 65535'")
        servers = [nginx(tmp, cert, key, 1, PORT_1), nginx(tmp, cert, key, "auto", PORT_AUTO),
                   website(tmp, "spt", images["spt"]), website(tmp, "hvt", images["hvt"])]
        results = {s.label: {"handshakes": [], "keep_alive": [], "latency": [], "keep_alive_after": []}
                   for s in servers}
        negotiated = {}
        try:
            for server in servers:
                sh(f"ip netns exec {server.ns} sysctl -q net.ipv4.ip_local_port_range='1024 65535'")
                negotiated[server.label] = check(server, ca, client_conf)
            # Round-robin, so that whatever else the machine does in the
            # meantime falls on every server alike.
            for run in range(args.runs):
                for server in servers:
                    # The new connections last: a server that closed
                    # thousands of them may be slower for a while
                    # (TIME-WAIT), which the last figure shows.
                    r = results[server.label]
                    r["keep_alive"].append(keep_alive(server, args, client_conf))
                    r["latency"].append(latency(server, args))
                    r["handshakes"].append(handshakes(server, args))
                    r["keep_alive_after"].append(keep_alive(server, args, client_conf))
                    if not server.alive():
                        print(f"  {server.label} died in run {run + 1}; see {server.log}")
                        failed = True
        except RuntimeError as e:
            print(f"bench/https.py: {e}")
            failed = True
        finally:
            for server in servers:
                server.stop()
            delete(CLIENT_NS, NGINX_NS, "lamina-https-spt", "lamina-https-hvt")

        def med(label, figure, index):
            runs = results[label][figure]
            return median([r[index] if r else None for r in runs]) if runs else None

        index_size = os.path.getsize(INDEX)
        print(f"HTTPS: GET / ({index_size} bytes), ECDSA P-256 certificate, medians of {args.runs} runs of "
              f"{args.seconds} s; server CPU as a share of one core")
        for label, agreed in negotiated.items():
            print(f"  negotiated with {label}: {agreed} (openssl s_client with the forced client configuration)")
        print(f"  {'':26} {'full handshakes/s':>17} {'server CPU':>10} {'ms CPU/hs':>9} {'client CPU':>10}"
              f" | {'keep-alive req/s':>16} {'server CPU':>10} {'us CPU/req':>10}"
              f" | handshake p50 / p99 (1 client) | keep-alive req/s after the handshake load")
        num = lambda v, f: f"{v:{f}}" if v is not None else "n/a"
        for server in servers:
            lab = server.label
            hs = [med(lab, "handshakes", i) for i in range(4)]
            ka = [med(lab, "keep_alive", i) for i in range(4)]
            lat = [med(lab, "latency", i) for i in range(2)]
            after = med(lab, "keep_alive_after", 0)
            failed |= None in hs + ka + lat + [after]
            print(f"  {lab:26} {num(hs[0], '17.0f')} {num(hs[1] and hs[1] * 100, '9.0f')}% {num(hs[2], '9.3f')}"
                  f" {num(hs[3] and hs[3] * 100, '9.0f')}% | {num(ka[0], '16.0f')} {num(ka[1] and ka[1] * 100, '9.0f')}%"
                  f" {num(ka[2], '10.1f')} | {num(lat[0], '.3f')} / {num(lat[1], '.3f')} ms | {num(after, '.0f')}")
        reference = servers[0].label
        for figure, index, name, better in (("handshakes", 0, "full handshakes/s", "higher"),
                                            ("handshakes", 2, "server CPU per full handshake", "lower"),
                                            ("keep_alive", 0, "keep-alive requests/s", "higher"),
                                            ("keep_alive", 2, "server CPU per keep-alive request", "lower"),
                                            ("latency", 0, "handshake latency p50", "lower"),
                                            ("latency", 1, "handshake latency p99", "lower"),
                                            ("keep_alive_after", 0, "keep-alive requests/s after the handshake load",
                                             "higher")):
            ref = med(reference, figure, index)
            parts = []
            for server in servers[1:]:
                value = med(server.label, figure, index)
                parts.append(f"{server.label} {value / ref:.2f}x" if value is not None and ref else
                             f"{server.label} n/a")
            print(f"  {name} ({better} is better) against {reference}: {', '.join(parts)}")
        for target, (plain, with_tls, plain_has, tls_has) in sizes.items():
            if plain is None:
                print(f"  image size on {target}: {with_tls / 1024:.0f} KiB with a certificate baked in; without: n/a"
                      f" ({own_certs} exists and would be baked in: move it away to measure)")
                failed = True
                continue
            print(f"  image size on {target}: {with_tls / 1024:.0f} KiB with a certificate baked in, "
                  f"{plain / 1024:.0f} KiB without (HTTP only): {(with_tls - plain) / 1024:+.0f} KiB; "
                  f"rustls's code {'is' if plain_has else 'is not'} in the image without a certificate"
                  f"{' too (the website chooses HTTPS at run time: the difference is the certificate and layout)' if plain_has else ''}"
                  f"{'' if tls_has else ' (and NOT found in the one with: the marker is wrong)'}")
            failed |= not tls_has
    if failed:
        sys.exit("bench/https.py: some figures could not be measured (n/a above)")


if __name__ == "__main__":
    main()
