"""Simulated hosts for network tests: namespaces joined by an underlay bridge (MTU 1400) in a
namespace of its own, "containers" as namespaces on a host, and the checks a user would run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime.net import links, netns, vxlan

UNDERLAY_MTU = 1400
PORT = 4789
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # <linux/in.h>; Python's socket module lacks them


class Cluster:
    """Hosts (namespaces) on one underlay bridge in a namespace of its own; everything made is
    a namespace under the run dir, so removing those removes every link, route and table."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.made: list[Path] = []
        self.underlay = self.ns("underlay")
        links.ensure_bridge(self.underlay, "ulbr", "198.18.0.254", 24, UNDERLAY_MTU)
        self.hosts: dict[str, Path] = {}

    def ns(self, name: str) -> Path:
        path = netns.ensure(netns.path(self.run_dir, name))
        self.made.append(path)
        return path

    def host(self, n: int) -> Path:
        ns = self.ns(f"h{n}")
        links.ensure_veth(self.underlay, f"ul{n}", "ulbr", ns, "eth0", self.underlay_ip(n), 24,
                          f"02:00:c6:12:00:{n:02x}", UNDERLAY_MTU)
        # a switch, not an agent's bridge: it sends no frame back out of the port it came in on
        bridge_cmd(self.underlay, "link", "set", "dev", f"ul{n}", "hairpin", "off")
        netns.sysctl(ns, "net.ipv4.ip_forward", "1")
        self.hosts[f"h{n}"] = ns
        return ns

    @staticmethod
    def underlay_ip(n: int) -> str:
        """Host n's address on the underlay (inside the test's own namespaces only)."""
        return f"198.18.0.{n}"

    def spec(self, n: int, vni: int = 100, cidr: str = "10.240.0.0/16") -> vxlan.OverlaySpec:
        base = cidr.split(".")
        return vxlan.OverlaySpec(
            network=f"net{vni}", vni=vni, node=f"node{n}", subnet=f"{base[0]}.{base[1]}.{n}.0/24",
            cidr=cidr, underlay_ip=self.underlay_ip(n), underlay_dev="eth0", port=PORT,
            mtu=vxlan.mtu_for([UNDERLAY_MTU]))

    def container(self, n: int, spec: vxlan.OverlaySpec, name: str) -> tuple[Path, str]:
        """A namespace on the overlay's bridge of host n, with the subnet's .2 and its default
        route through the bridge."""
        ns = self.ns(name)
        ip = spec.subnet.rsplit(".", 1)[0] + ".2"
        links.ensure_veth(self.hosts[f"h{n}"], f"v{name}"[:15], spec.bridge, ns, "eth0", ip, 24,
                          f"02:00:0a:f0:{n:02x}:{spec.vni % 256:02x}", spec.mtu)
        links.ensure_default_route(ns, spec.gateway)
        return ns, ip

    def remove(self) -> None:
        for ns in reversed(self.made):
            netns.remove(ns)


def ping(ns: Path, ip: str) -> bool:
    done = subprocess.run(["nsenter", f"--net={ns}", "busybox", "ping", "-c", "1", "-W", "2", ip],
                          check=False, capture_output=True, text=True, timeout=10)
    return done.returncode == 0


def ip_cmd(ns: Path, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", "ip", *args], capture_output=True,
                          text=True, check=True).stdout


def bridge_cmd(ns: Path, *args: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", "bridge", *args], capture_output=True,
                          text=True, check=True).stdout
