"""Every verb from any host: three simulated hosts whose agents talk over loopback with mutual
TLS; `ps` from each shows the same rows with their nodes, `logs` and `exec` work from a host
that does not run the container, a machine outside the cluster reaches them with `-H` and a
client cert, and a node that does not answer is named instead of hanging `ps`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cluster import etcd, keys
from tests.cluster.agent_hosts import Host, join
from tests.cluster.etcd_harness import EtcdCluster
from tests.cluster.test_tls import free_port, listening, tls_flags
from tests.support import waiting

STACK = """\
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo hello from web; echo to stderr >&2; sleep 3600"]
    deploy: {placement: {constraints: ["node.hostname==h2"]}}
  db:
    image: busybox:latest
    command: ["sh", "-c", "echo db ready; sleep 3600"]
    deploy: {placement: {constraints: ["node.hostname==h3"]}}
  cache:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy: {placement: {constraints: ["engine.labels.tier==front"]}}
"""


@pytest.fixture
def cluster(etcd1: EtcdCluster, busybox_archive: Path, tmp_path: Path
            ) -> Iterator[tuple[list[Host], Path, dict[str, int]]]:
    """h1, h2, h3 with TCP APIs on loopback and the cluster's certs; all removed after."""
    made: list[Host] = []
    ports: dict[str, int] = {}
    certs = tmp_path / "tls"
    try:
        for n in (1, 2, 3):
            name = f"h{n}"
            if n == 1:
                probe = Host()
                made.append(probe)
                probe.stack.pc("cluster", "init", "--dir", str(certs), "--node=h1",
                               "--node=h2", "--node=h3")
            port = ports[name] = free_port()
            host = join(made, etcd1, name, f"10.99.0.{n}", *(["tier=front"] if n == 1 else []),
                        flags=("--listen-tcp", f"127.0.0.1:{port}", *tls_flags(certs, name)))
            waiting.wait_for(lambda p=port: listening(p), timeout=30, what=f"{name}'s API")
            host.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
        yield made[1:], certs, ports
    finally:
        for host in made:
            with contextlib.suppress(Exception):
                host.remove()


def ps_rows(host: Host, project: str) -> tuple[list[tuple[str, str, str]], str]:
    done = host.stack.pc("-p", project, "ps", "-a", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return sorted((r["Name"], r["Node"], r["State"]) for r in rows), done.stderr


def test_ps_logs_and_exec_from_any_host(cluster: tuple[list[Host], Path, dict[str, int]]):
    (h1, h2, h3), certs, ports = cluster
    name = h1.stack.project
    h1.stack.write(STACK)
    h1.stack.pc("up", "-d")
    want = [(f"{name}-cache-1", "h1", "running"), (f"{name}-db-1", "h3", "running"),
            (f"{name}-web-1", "h2", "running")]
    waiting.wait_for(lambda: ps_rows(h1, name)[0] == want, timeout=90,
                     what="every replica running on its node")
    for host in (h2, h3):
        rows, stderr = ps_rows(host, name)
        assert rows == want, (host.stack.project, stderr)
    table = h3.stack.pc("-p", name, "ps").stdout.splitlines()
    assert table[0].split()[-1] == "NODE"
    assert any(line.startswith(f"{name}-web-1") and line.split()[-1] == "h2" for line in table)

    # logs of web (on h2) from h1 and h3; of db (on h3) from h2.
    waiting.wait_for(lambda: "hello from web" in h1.stack.pc("-p", name, "logs", "web").stdout,
                     timeout=30, what="web's first line")
    logs = h3.stack.pc("-p", name, "logs", "--no-log-prefix", "web")
    assert logs.stdout.splitlines() == ["hello from web"]
    assert logs.stderr.splitlines()[-1:] == ["to stderr"]
    both = h2.stack.pc("-p", name, "logs", "--no-color", "db", "web").stdout
    assert both.splitlines() == ["web-1  | hello from web", "db-1   | db ready"] or \
        both.splitlines() == ["db-1   | db ready", "web-1  | hello from web"]

    # exec in web from h1 and h3: its output, its errors and its exit code come back.
    done = h1.stack.pc("-p", name, "exec", "-T", "web", "sh", "-c",
                       "echo on $(hostname); echo oops >&2; exit 3", check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("on ") and done.stderr.strip().endswith("oops")
    web_id = next(row["ID"] for row in map(json.loads, h2.stack.pc(
        "-p", name, "ps", "--format", "json").stdout.splitlines()) if row["Service"] == "web")
    assert done.stdout.strip() == f"on {web_id[:12]}"
    assert h3.stack.pc("-p", name, "exec", "-T", "db", "cat", "/proc/1/cmdline").returncode == 0
    missing = h1.stack.pc("-p", name, "exec", "-T", "--index", "2", "web", "true", check=False)
    assert missing.returncode != 0 and "is not running" in missing.stderr

    # top of web (on h2) from h1: its processes, under its name.
    top = h1.stack.pc("-p", name, "top", "web").stdout.splitlines()
    assert top[0] == f"{name}-web-1" and top[1].split()[:2] == ["UID", "PID"]
    assert any(line.endswith("sleep 3600") for line in top[2:])

    # stop, start and kill from hosts that do not run the container.
    def state(service: str) -> str:
        return next(s for n, _, s in ps_rows(h1, name)[0] if n == f"{name}-{service}-1")

    stopped = h1.stack.pc("-p", name, "stop", "-t", "0", "web")
    assert f"Container {name}-web-1  Stopped" in stopped.stdout + stopped.stderr
    assert state("web") == "exited"
    h3.stack.pc("-p", name, "start", "web")
    assert state("web") == "running"
    h2.stack.pc("-p", name, "kill", "db")
    assert state("db") == "exited"
    h2.stack.pc("-p", name, "restart", "db")
    assert state("db") == "running"

    # From outside the cluster (a CLI with no agent of its own), with the client cert.
    outside = ("-H", f"tcp://127.0.0.1:{ports['h3']}", "--tlscacert", str(certs / "ca.pem"),
               "--tlscert", str(certs / "client" / "cert.pem"),
               "--tlskey", str(certs / "client" / "key.pem"))
    probe = Host()
    try:
        rows = [json.loads(line) for line in probe.stack.pc(
            *outside, "-p", name, "ps", "--format", "json").stdout.splitlines()]
        assert sorted((r["Name"], r["Node"]) for r in rows) == [(n, node) for n, node, _ in want], \
            [(r["Name"], r["Node"], r["State"], r["ID"][:8]) for r in rows]
        assert "hello from web" in probe.stack.pc(*outside, "-p", name, "logs", "web").stdout
        done = probe.stack.pc(*outside, "-p", name, "exec", "web", "echo", "hi")
        assert done.stdout == "hi\n"
    finally:
        probe.remove()

    h2.stack.pc("-p", name, "down", "-t", "0")
    waiting.wait_for(lambda: ps_rows(h1, name)[0] == [], timeout=60, what="every replica gone")


def test_ps_names_a_node_that_does_not_answer_instead_of_hanging(
        cluster: tuple[list[Host], Path, dict[str, int]], etcd1: EtcdCluster):
    (h1, _, _), _, _ = cluster
    # A node whose API accepts connections and then says nothing, and one that is not there.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = free_port()

    async def register(node: str, api: str) -> int:
        async with etcd.Client(etcd1.endpoints) as client:
            lease = await client.grant(120)
            await client.put(keys.node_status(node), json.dumps({
                "hostname": node, "address": "10.99.0.9", "api": api}), lease=lease)
            return lease

    async def revoke(lease: int) -> None:
        async with etcd.Client(etcd1.endpoints) as client:
            await client.revoke(lease)

    leases = []
    try:
        leases.append(asyncio.run(register("silent", f"https://127.0.0.1:"
                                                     f"{silent.getsockname()[1]}")))
        leases.append(asyncio.run(register("gone", f"https://127.0.0.1:{closed}")))
        done = h1.stack.pc("-p", h1.stack.project, "ps", timeout=30)
        assert "node gone did not answer" in done.stderr
        assert "node silent did not answer" in done.stderr
        assert done.stdout.splitlines()[0].startswith("NAME")
    finally:
        silent.close()
        for lease in leases:
            asyncio.run(revoke(lease))


def test_logs_follow_streams_another_hosts_container_until_it_exits(
        cluster: tuple[list[Host], Path, dict[str, int]]):
    (h1, _, _), _, _ = cluster
    name = h1.stack.project
    h1.stack.write("""\
services:
  tick:
    image: busybox:latest
    command: ["sh", "-c", "echo one; sleep 3; echo two"]
    restart: "no"
    deploy: {placement: {constraints: ["node.hostname==h2"]}}
""")
    h1.stack.pc("up", "-d")
    waiting.wait_for(lambda: ps_rows(h1, name)[0] != [], timeout=60, what="tick on h2")
    follow = h1.stack.start("-p", name, "logs", "-f", "--no-log-prefix", "tick")
    try:
        out, err = follow.communicate(timeout=90)  # it ends once tick has exited on h2
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    assert out.splitlines() == ["one", "two"]
    assert any(r[1] == "h2" and r[2] == "exited" for r in ps_rows(h1, name)[0])
    h1.stack.pc("-p", name, "down", "-t", "0")
