"""What the network benchmarks share: shell calls, guest images, and the
namespaces they create (and always remove): a tap for a unikernel, or a
veth pair between a client and a Linux server. Only addresses inside those
namespaces are used."""
import os, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
# Where `cargo tenders` (.cargo/config.toml) puts the tenders: optimised and
# static, as `lamina run` builds and starts them.
TENDERS = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release")


def build_tenders():
    subprocess.run(["cargo", "tenders", "-q"], cwd=ROOT, check=True)


def tender_path(target):
    """The tender for `target` ("spt", "hvt") that build_tenders() built."""
    return os.path.join(TENDERS, f"lamina-{target}")


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=True, check=check, text=True, **kw)


def image(target, app):
    """Builds `app` for `target` (release) and returns the image's path."""
    out = subprocess.run([os.path.join(REL, "lamina"), "build", "--release", "-t", target, app], cwd=ROOT,
                         check=True, stderr=subprocess.PIPE, text=True).stderr
    return out.strip().splitlines()[-1].split(": ")[-1].split(" (")[0]


def delete(*namespaces):
    for ns in namespaces:
        sh(f"ip netns del {ns}", check=False, stderr=subprocess.DEVNULL)


def tap_namespace(ns, host_cidr):
    """Namespace `ns` with tap0 up at `host_cidr`, for a tender to attach."""
    delete(ns)
    sh(f"ip netns add {ns} && ip -n {ns} link set lo up && ip -n {ns} tuntap add dev tap0 mode tap"
       f" && ip -n {ns} addr add {host_cidr} dev tap0 && ip -n {ns} link set tap0 up")


def veth_namespaces(client, server, client_cidr, server_cidr, tag):
    """Namespaces `client` and `server` joined by a veth pair (veth-TAGc,
    veth-TAGs) at the two addresses."""
    delete(client, server)
    for ns in (client, server):
        sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
    sh(f"ip link add veth-{tag}c netns {client} type veth peer name veth-{tag}s netns {server}")
    sh(f"ip -n {client} addr add {client_cidr} dev veth-{tag}c && ip -n {client} link set veth-{tag}c up")
    sh(f"ip -n {server} addr add {server_cidr} dev veth-{tag}s && ip -n {server} link set veth-{tag}s up")
