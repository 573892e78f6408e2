"""Benchmark: how fast an overlay network follows the cluster's hosts.

Run as root from the repository:

    .venv/bin/python bench/bench_cluster.py [--repeat 3]

Two simulated hosts (network namespaces on an underlay bridge of MTU 1400, each with its own
agent, state root and run dir) join a real one-member etcd on loopback and share an overlay
network; host 1 runs a client container on it. Then, `--repeat` times, a new host joins and
dies:

- join: from the new host's agent started until both peers hold its route (polled every 10 ms
  with `ip route`), and from its first container's `up -d` returning until host 1's client
  resolves that container's service name (polled with `exec nslookup`, so coarse);
- dead: from the host's agent killed (kill -9) and its underlay link set down until neither
  peer holds its fdb entry, neighbour or route (the node lease is 10 s).

A markdown section goes to stdout and is appended to bench/RESULTS-cluster.md with the command
line and the date."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.cluster import (  # noqa: E402
    etcd_harness,
    overlay_hosts,
    test_overlay as scenarios,
)
from tests.support import oci_image  # noqa: E402

RESULTS = BENCH / "RESULTS-cluster.md"
POLL = 0.01


def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held, from now."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - began


def has_route(host: overlay_hosts.Host, subnet: str) -> bool:
    return any(line.startswith(subnet + " ")
               for line in host.kernel("route", "show", "proto", "93").splitlines())


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f})")


def one_round(hosts: overlay_hosts.Hosts, etcd: etcd_harness.EtcdCluster,
              a: overlay_hosts.Host, b: overlay_hosts.Host, n: int) -> tuple[float, float, float]:
    """Host n joins, runs a service, dies: (join, name, dead) seconds."""
    new = hosts.add(n, start=False)
    began = time.monotonic()
    new.join(etcd)
    until(lambda: bool(_subnet(new)), 30, "the new host's subnet")
    subnet = _subnet(new)
    until(lambda: has_route(a, subnet) and has_route(b, subnet), 30, "peers' routes")
    join = time.monotonic() - began
    service = f"svc{n}"
    new.write(scenarios.WEB.format(host=new.name, net="mesh").replace("web:", f"{service}:"))
    new.pc("up", "-d")
    name = until(lambda: scenarios.resolves(a, "client", service), 60,
                 "the new service's name on host 1")
    new.kill_agent()
    began = time.monotonic()
    new.kernel("link", "set", "eth0", "down")
    until(lambda: not scenarios.peer_entries(a, new) and not scenarios.peer_entries(b, new), 60,
          "the dead host's entries gone")
    return join, name, time.monotonic() - began


def run(repeat: int) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="pcompose-bench-cluster-"))
    archive = oci_image.write_docker_archive(workdir / "busybox.tar", [oci_image.busybox_layer()],
                                             ["busybox:latest"])
    etcd_gen = etcd_harness._cluster(1)
    etcd = next(etcd_gen)
    hosts = overlay_hosts.Hosts(etcd, archive)
    joins, names, deaths = [], [], []
    try:
        a, b = scenarios.mesh(hosts, 1, 2)
        for round_ in range(repeat):
            join, name, dead = one_round(hosts, etcd, a, b, 3 + round_)
            joins.append(join)
            names.append(name)
            deaths.append(dead)
            print(f"round {round_ + 1}: join {join:.2f} s, name {name:.2f} s, dead {dead:.2f} s",
                  flush=True)
    finally:
        hosts.remove()
        etcd_gen.close()  # the harness's finally: etcd stopped by its PID, its dirs removed
        shutil.rmtree(workdir, ignore_errors=True)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/bench_cluster.py",
                                                 *sys.argv[1:]])
    return (f"\n## Overlay: hosts joining and dying, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n"
            f"Command (as root, from the repository root): `{command}`\n\n"
            f"Two hosts on an overlay, then {repeat} times a third joins, runs a service and "
            f"dies (load average after: {load} on 2 cores, shared with other work):\n\n"
            f"- new host's agent started -> both peers route to its subnet: {summary(joins)}\n"
            f"- its first container's `up -d` returned -> host 1 resolves its service name: "
            f"{summary(names)} (polled through `exec`, which is coarse)\n"
            f"- host dead (agent killed, link down) -> its fdb, neighbour and route gone on "
            f"both peers: {summary(deaths)} (the node lease is 10 s)\n")


def _subnet(host: overlay_hosts.Host) -> str:
    try:
        return scenarios.other_subnet(host)
    except AssertionError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = run(args.repeat)
    print(text)
    with open(RESULTS, "a") as out:
        out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
