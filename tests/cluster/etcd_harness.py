"""A real etcd for tests: 1 or 3 members on free loopback ports, temporary data dirs, optional
TLS with client certificates; every member stopped by its PID and its dirs removed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ETCD = "/usr/bin/etcd"


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together so that they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_certs(directory: Path) -> Certs:
    """A CA, a server cert for 127.0.0.1 (serverAuth and clientAuth: the gateway inside etcd
    dials etcd with it) and a client cert, made with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(
            f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"
            "keyUsage=digitalSignature,keyEncipherment\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    d = str(directory)
    return Certs(f"{d}/ca.pem", f"{d}/server.pem", f"{d}/server.key", f"{d}/client.pem",
                 f"{d}/client.key")


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """`cluster.endpoints` for a client; kill(i), pause(i)/resume(i), compact() for faults."""

    def __init__(self, size: int, base: Path, certs: Certs | None = None) -> None:
        self.base, self.certs = base, certs
        ports = free_ports(2 * size)
        scheme = "https" if certs else "http"
        self.members = [Member(f"m{i}", f"{scheme}://127.0.0.1:{ports[2 * i]}",
                               f"http://127.0.0.1:{ports[2 * i + 1]}", base / f"m{i}")
                        for i in range(size)]
        self.paused: set[int] = set()

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def index_of(self, endpoint: str) -> int:
        return self.endpoints.index(endpoint)

    def start(self) -> None:
        for index in range(len(self.members)):
            self._launch(index)
        for index in range(len(self.members)):
            self.wait_healthy(index)

    def restart(self, index: int) -> None:
        """A killed member started again on its data dir, as after a crash."""
        assert not self.members[index].alive()
        self._launch(index)
        self.wait_healthy(index)

    def _launch(self, index: int) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        member = self.members[index]
        argv = [ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
                "--listen-client-urls", member.client_url,
                "--advertise-client-urls", member.client_url,
                "--listen-peer-urls", member.peer_url,
                "--initial-advertise-peer-urls", member.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.base.name, "--log-level", "warn"]
        if self.certs:
            argv += ["--cert-file", self.certs.server_cert, "--key-file",
                     self.certs.server_key, "--trusted-ca-file", self.certs.ca,
                     "--client-cert-auth"]
        with open(self.base / f"{member.name}.log", "ab") as log:
            member.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL,
                                              start_new_session=True)

    def _get(self, url: str, timeout: float) -> bytes:
        context = None
        if self.certs:
            context = ssl.create_default_context(cafile=self.certs.ca)
            context.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.read()

    def healthy(self, index: int) -> bool:
        try:
            body = self._get(self.members[index].client_url + "/health", 1.0)
        except OSError:
            return False
        return json.loads(body).get("health") == "true"

    def wait_healthy(self, index: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(index):
            member = self.members[index]
            if not member.alive():
                log = (self.base / f"{member.name}.log").read_text(errors="replace")
                raise RuntimeError(f"etcd {member.name} exited:\n{log[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd {member.name} not healthy after {timeout}s")
            time.sleep(0.1)

    def kill(self, index: int) -> None:
        """kill -9 of one member, as a crash."""
        member = self.members[index]
        if member.alive():
            os.kill(member.pid, signal.SIGKILL)
            assert member.process is not None
            member.process.wait()

    def pause(self, index: int) -> None:
        os.kill(self.members[index].pid, signal.SIGSTOP)
        self.paused.add(index)

    def resume(self, index: int) -> None:
        os.kill(self.members[index].pid, signal.SIGCONT)
        self.paused.discard(index)

    def compact(self, revision: int) -> None:
        """Compaction of everything before `revision`, through a healthy member."""
        for index, member in enumerate(self.members):
            if member.alive() and index not in self.paused and self.healthy(index):
                request = urllib.request.Request(
                    member.client_url + "/v3/kv/compaction",
                    data=json.dumps({"revision": str(revision), "physical": True}).encode())
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                return
        raise RuntimeError("no healthy etcd member to compact through")

    def stop(self) -> None:
        """Every member gone by its PID (a paused one is woken first), its dirs removed."""
        for index, member in enumerate(self.members):
            if member.process is None or not member.alive():
                continue
            if index in self.paused:
                os.kill(member.pid, signal.SIGCONT)
            member.process.terminate()
            try:
                member.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
        self.paused.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def _cluster(size: int, tls: bool = False):
    base = Path(tempfile.mkdtemp(prefix="pcompose-etcd-"))
    certs = None
    try:
        if tls:
            certs_dir = base / "certs"
            certs_dir.mkdir()
            certs = make_certs(certs_dir)
        cluster = EtcdCluster(size, base, certs)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd1():
    """One etcd member on loopback."""
    yield from _cluster(1)


@pytest.fixture
def etcd3():
    """Three etcd members on loopback, for the fault tests."""
    yield from _cluster(3)


@pytest.fixture
def etcd_tls():
    """One etcd member that serves TLS only and asks clients for a certificate."""
    yield from _cluster(1, tls=True)
