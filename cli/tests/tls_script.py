"""What the TLS test scripts (tls_bad_input.py, tls_flood.py) share: how
they fail, their file-descriptor limit, and a real ClientHello."""
import resource, ssl, sys


def fail(why):
    """Reports `why` and ends the script with status 1."""
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


def raise_fd_limit():
    """As many open sockets as the hard limit allows (thousands are held)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_hello(context):
    """A real ClientHello, as `context` (Python's ssl, OpenSSL) would send
    it for localhost, taken from a handshake over memory buffers."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    if not hello.startswith(b"\x16\x03") or len(hello) < 100:
        fail(f"no ClientHello from the memory handshake: {hello[:16]!r}")
    return hello
