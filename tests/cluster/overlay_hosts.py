"""Simulated hosts of a cluster for overlay tests: each a network namespace with an eth0 on one
underlay bridge (MTU 1400, in a namespace of its own), its own state root, run dir, cgroup
parent and busybox image, and its own agent joined to a real etcd; all removed after."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator

from tests.cluster import agent_hosts
from tests.cluster.etcd_harness import EtcdCluster
from tests.e2e import conftest as e2e
from tests.support import waiting

UNDERLAY_MTU = 1400


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


class Host(agent_hosts.Host):
    """Host n: 198.18.0.n on the underlay, an agent named hN started by PID."""

    def __init__(self, n: int, lan: str, busybox_archive) -> None:
        super().__init__(e2e.make_stack(busybox_archive, "t" + uuid.uuid4().hex[:7]), f"h{n}")
        self.n = n
        self.address = f"198.18.0.{n}"
        ns = self.stack.host_netns
        port = f"ul{uuid.uuid4().hex[:8]}"
        ip("-n", lan, "link", "add", port, "mtu", str(UNDERLAY_MTU), "master", "ulbr",
           "type", "veth", "peer", "name", "eth0", "netns", ns, "mtu", str(UNDERLAY_MTU))
        ip("-n", lan, "link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")

    @property
    def netns(self) -> str:
        return self.stack.host_netns

    def write(self, text: str) -> None:
        """The stack of this host: each service placed here (in a cluster `up` places the
        replicas on any node, as `docker stack deploy` does)."""
        here = f'    deploy: {{placement: {{constraints: ["node.hostname == {self.name}"]}}}}\n'
        self.stack.write(text.replace("    image: busybox:latest\n",
                                      "    image: busybox:latest\n" + here))

    def pc(self, *args: str, check: bool = True, timeout: float = 120):
        return self.stack.pc(*args, check=check, timeout=timeout)

    def join(self, etcd: EtcdCluster) -> None:
        """Its agent started in the cluster of `etcd`, as node hN at 198.18.0.n."""
        self.start_agent("--cluster", ",".join(etcd.endpoints), "--node-name", self.name,
                         "--advertise-addr", self.address)

    def networks(self) -> dict[str, dict]:
        done = self.pc("network", "ls", "--format", "json")
        return {row["Name"]: row for row in map(json.loads, done.stdout.splitlines())}

    def wait_network(self, name: str) -> None:
        waiting.wait_for(lambda: name in self.networks() or self._died(), timeout=30,
                         what=f"network {name} on {self.name}")

    def sh(self, service: str, script: str, check: bool = True, timeout: float = 60):
        return self.pc("exec", "-T", service, "sh", "-c", script, check=check, timeout=timeout)

    def kernel(self, *args: str) -> str:
        return ip("-n", self.netns, *args)

    def bridge(self, *args: str) -> list[str]:
        return subprocess.run(["bridge", "-n", self.netns, *args], check=True,
                              capture_output=True, text=True).stdout.splitlines()

    def remove(self) -> None:
        try:
            if self.agent is not None and self.agent.poll() is None:
                self.pc("-p", self.stack.project, "down", "-v", "-t", "0", check=False)
        finally:
            super().remove()


class Hosts:
    """`hosts.add(n)` makes host n and starts its agent in the cluster of `etcd`."""

    def __init__(self, etcd: EtcdCluster, busybox_archive) -> None:
        self.etcd, self.archive = etcd, busybox_archive
        self.lan = f"pcul{uuid.uuid4().hex[:8]}"
        self.made: list[Host] = []
        ip("netns", "add", self.lan)
        ip("-n", self.lan, "link", "add", "ulbr", "mtu", str(UNDERLAY_MTU), "type", "bridge")
        ip("-n", self.lan, "link", "set", "ulbr", "up")

    def add(self, n: int, start: bool = True) -> Host:
        host = Host(n, self.lan, self.archive)
        self.made.append(host)
        if start:
            host.join(self.etcd)
        return host

    def remove(self) -> None:
        try:
            for host in self.made:
                with contextlib.suppress(Exception):  # the others still go
                    host.remove()
        finally:
            subprocess.run(["ip", "netns", "delete", self.lan], check=False, capture_output=True)


def hosts_in(etcd: EtcdCluster, busybox_archive) -> Iterator[Hosts]:
    """For a fixture: the hosts, all removed after, pass or fail."""
    hosts = Hosts(etcd, busybox_archive)
    try:
        yield hosts
    finally:
        hosts.remove()
