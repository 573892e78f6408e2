"""Fixtures for real network tests: a fresh namespace as the simulated host, and busybox
processes run inside container namespaces and stopped by PID. Everything is removed after."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from runtime.net import bridge, dns, links, model, netns
from tests.linux.net import simhosts
from tests.support import waiting

LAN_HOST = "192.0.2.1"  # the simulated host's address on a link to a client namespace we make


@pytest.fixture
def host(unique: str, state_root: Path, run_dir: Path):
    """An agent whose host namespace is a fresh netns (never the machine's own network)."""
    host_ns = netns.ensure(netns.path(run_dir, "host"))
    h = model.Host(agent=unique, state_root=state_root, run_dir=run_dir, netns=host_ns)
    try:
        yield h
    finally:
        try:
            bridge.teardown(h)
        finally:
            for ns in sorted((run_dir / "netns").glob("*")):
                netns.remove(ns)



@pytest.fixture
def cluster(run_dir: Path):
    """Simulated hosts joined by an underlay bridge (simhosts), removed after."""
    c = simhosts.Cluster(run_dir)
    try:
        yield c
    finally:
        c.remove()

def container(host: model.Host, name: str, *networks, **kwargs) -> model.ContainerNet:
    """A ContainerNet with its namespace under the host's run dir."""
    eps = tuple(n if isinstance(n, model.EndpointSpec) else model.EndpointSpec(n) for n in networks)
    kwargs.setdefault("service", name.split("-")[-2])  # <project>-<service>-<n>
    return model.ContainerNet(
        container=name, netns=netns.path(host.run_dir, name), endpoints=eps, **kwargs
    )


class Procs:
    """Busybox processes inside container namespaces, each with the container's resolv.conf and
    hosts bind-mounted in a private mount namespace; all stopped by PID at the end."""

    def __init__(self, host: model.Host):
        self.host = host
        self.started: list[subprocess.Popen] = []

    def argv(self, ns: Path | None, name: str | None, cmd: list[str]) -> list[str]:
        prefix = ["nsenter", f"--net={ns}"] if ns else []
        if name is None:
            return [*prefix, *cmd]
        files = self.host.run_dir / "net" / "files" / name
        script = (
            f"mount --bind {files}/resolv.conf /etc/resolv.conf && "
            f"mount --bind {files}/hosts /etc/hosts && exec \"$@\""
        )
        return [*prefix, "unshare", "-m", "sh", "-c", script, "sh", *cmd]

    def start(self, ns: Path | None, cmd: list[str], name: str | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(ns, name, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    async def run(self, ns: Path | None, cmd: list[str], name: str | None = None, timeout: float = 10):
        """Run to the end while the event loop (and so the DNS server) keeps going."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(ns, name, cmd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out.decode(), err.decode()

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def lan_client(host):
    """A client namespace joined to the simulated host by its own little LAN bridge."""
    ns = netns.ensure(netns.path(host.run_dir, "lanclient"))
    links.ensure_bridge(host.netns, "lan0", LAN_HOST, 24, 1500)
    links.ensure_veth(host.netns, "lanc0", "lan0", ns, "eth0", "192.0.2.2", 24, "02:00:c0:00:02:02", 1500)
    links.ensure_default_route(ns, LAN_HOST)
    return ns


@pytest.fixture
def procs(host):
    p = Procs(host)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
async def dns_server(host):
    """The embedded DNS server of the host; no upstream, so nothing is forwarded off the machine."""
    server = dns.Server(host.netns, upstreams=())
    try:
        yield server
    finally:
        await server.close()


def httpd(procs: Procs, ns: Path, root: Path, body: str, port: int = 80) -> subprocess.Popen:
    """busybox httpd serving `body` at / inside `ns`, returned once it accepts connections."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(body)
    proc = procs.start(ns, ["busybox", "httpd", "-f", "-p", str(port), "-h", str(root)])
    wait_listening(ns, port)
    return proc


def wait_listening(ns: Path, port: int, timeout: float = 10.0) -> None:
    """Poll the namespace's own loopback: a refused connect answers at once."""

    def listens() -> bool:
        sock = netns.socket(ns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.connect(("127.0.0.1", port))
            return True
        except ConnectionRefusedError:
            return False
        finally:
            sock.close()

    waiting.wait_for(listens, timeout=timeout, interval=0.02,
                     what=f"something listening on port {port} in {ns}")


async def fetch(procs: Procs, ns: Path | None, url: str, name: str | None = None, timeout: int = 3):
    """busybox wget (under `timeout`: its own -T crashes) -> (exit code, body)."""
    rc, out, _ = await procs.run(ns, ["timeout", str(timeout), "busybox", "wget", "-q", "-O", "-", url], name)
    return rc, out


async def until_fetched(procs, ns, url, name=None, attempts=3):
    """Fetch, retrying a few times while httpd starts up; returns the last (code, body)."""
    for _ in range(attempts):
        rc, body = await fetch(procs, ns, url, name)
        if rc == 0:
            break
        await asyncio.sleep(0.2)
    return rc, body
