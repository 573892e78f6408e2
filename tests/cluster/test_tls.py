"""The agents' TCP API: `cluster init` makes the CA and certs; an agent serving on TCP refuses a
client without a cert of the cluster's CA (or, when it has one, the token) and answers one
with it, over loopback; it never serves in clear unless told to; a node publishes where its
API is; `pcompose -H tcp://...` reaches it with a client cert or the token."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import subprocess
from pathlib import Path

from reconciler.cluster import etcd, keys
from tests.cluster.agent_hosts import Host, join
from tests.cluster.etcd_harness import EtcdCluster
from tests.support import waiting


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_init(host: Host, directory: Path, *nodes: str) -> None:
    host.stack.pc("cluster", "init", "--dir", str(directory),
                  *[f"--node={n}" for n in nodes])


def tls_flags(directory: Path, node: str) -> tuple[str, ...]:
    return ("--tls-ca", str(directory / "ca.pem"), "--tls-cert", str(directory / node /
                                                                      "cert.pem"),
            "--tls-key", str(directory / node / "key.pem"))


def get_version(port: int, context: ssl.SSLContext | None, token: str | None = None
                ) -> int:
    """The status of GET /v1/version over loopback, or raises what the connection did."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            if context is not None else http.client.HTTPConnection("127.0.0.1", port,
                                                                  timeout=10))
    try:
        conn.request("GET", "/v1/version",
                     headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def context(directory: Path, client: str | None) -> ssl.SSLContext:
    made = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    if client:
        made.load_cert_chain(str(directory / client / "cert.pem"),
                             str(directory / client / "key.pem"))
    return made


def refused(port: int, ctx: ssl.SSLContext | None, token: str | None = None) -> bool:
    """No answer at all (the handshake or the connection failed), or 401."""
    try:
        return get_version(port, ctx, token) == 401
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_tcp_api_refuses_clients_without_a_valid_cert_and_accepts_the_clusters(
        etcd1: EtcdCluster, hosts: list[Host], tmp_path: Path):
    certs, rogue = tmp_path / "tls", tmp_path / "rogue"
    probe = Host()  # the CLI's state dirs, for cluster init
    hosts.append(probe)
    cluster_init(probe, certs, "h1")
    cluster_init(probe, rogue, "h1")  # another CA: its certs are worth nothing here
    assert (certs / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert (certs / "client" / "key.pem").stat().st_mode & 0o077 == 0

    port = free_port()
    join(hosts, etcd1, "h1", "10.99.0.1",
         flags=("--listen-tcp", f"127.0.0.1:{port}", *tls_flags(certs, "h1")))
    waiting.wait_for(lambda: listening(port), timeout=30, what="the TCP API")

    assert get_version(port, context(certs, "client")) == 200
    assert get_version(port, context(certs, "h1")) == 200  # a peer agent's own cert
    assert refused(port, context(certs, None)), "no client cert"
    rogue_client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    rogue_client.load_cert_chain(str(rogue / "client" / "cert.pem"),
                                 str(rogue / "client" / "key.pem"))
    assert refused(port, rogue_client), "a cert of another CA"
    assert refused(port, None), "plain HTTP on the TLS port"

    # Where peers reach it, in its status.
    async def status() -> dict:
        async with etcd.Client(etcd1.endpoints) as client:
            _, kvs = await client.range(keys.NODES)
        found = [kv.json() for kv in kvs if kv.key.endswith("/status")]
        return found[0] if found else {}

    assert asyncio.run(status())["api"] == f"https://127.0.0.1:{port}"

    # The CLI from outside: with the client cert it lists; without one it is refused.
    remote = ("-H", f"tcp://127.0.0.1:{port}", "--tlscacert", str(certs / "ca.pem"))
    done = probe.stack.pc(*remote, "--tlscert", str(certs / "client" / "cert.pem"),
                          "--tlskey", str(certs / "client" / "key.pem"),
                          "-p", "nothing", "ps", "-a", "--format", "json")
    assert done.stdout == ""
    done = probe.stack.pc(*remote, "-p", "nothing", "ps", check=False)
    assert done.returncode != 0 and "pcompose: error:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_token_is_the_alternative_to_a_client_cert(
        etcd1: EtcdCluster, hosts: list[Host], tmp_path: Path):
    certs = tmp_path / "tls"
    probe = Host()
    hosts.append(probe)
    cluster_init(probe, certs, "h2")
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-the-cluster\n")
    token.chmod(0o600)
    port = free_port()
    join(hosts, etcd1, "h2", "10.99.0.2",
         flags=("--listen-tcp", f"127.0.0.1:{port}", *tls_flags(certs, "h2"),
                "--token", str(token)))
    waiting.wait_for(lambda: listening(port), timeout=30, what="the TCP API")

    no_cert = context(certs, None)
    assert get_version(port, no_cert, "s3cret-token-of-the-cluster") == 200
    assert get_version(port, no_cert) == 401
    assert get_version(port, no_cert, "s3cret-token-of-the-cluster-not") == 401
    assert get_version(port, context(certs, "client")) == 200  # a cert still does

    other = tmp_path / "other-token"
    other.write_text("not-the-token-of-the-cluster\n")
    remote = ("-H", f"tcp://127.0.0.1:{port}", "--tlscacert", str(certs / "ca.pem"))
    assert probe.stack.pc(*remote, "--token-file", str(token), "-p", "nothing",
                          "ps").returncode == 0
    done = probe.stack.pc(*remote, "--token-file", str(other), "-p", "nothing", "ps",
                          check=False)
    assert done.returncode != 0 and "certificate" in done.stderr


def test_an_agent_does_not_serve_tcp_in_clear_unless_told(etcd1: EtcdCluster,
                                                          hosts: list[Host]):
    probe = Host()
    hosts.append(probe)
    port = free_port()
    done = subprocess.run(
        probe.stack.argv("agent", "--cluster", ",".join(etcd1.endpoints), "--node-name", "h3",
                         "--advertise-addr", "10.99.0.3", "--listen-tcp", f"127.0.0.1:{port}"),
        env=probe.stack.env(), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "--insecure-tcp" in done.stderr
    assert not listening(port)
