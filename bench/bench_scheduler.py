"""Benchmark: the scheduler's decision for 1,000 replicas on 100 simulated nodes.

Placement alone (pure: first placement, then the same again from its answer, then after 10
nodes died), and with --etcd a whole scheduler pass against a real etcd on loopback (nodes
faked as keys: read nodes, projects and assignments, place, write the assignments in
transactions), first and unchanged.

Run: .venv/bin/python bench/bench_scheduler.py [--nodes 100] [--replicas 1000] [--runs 10] [--etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.cluster import desired, etcd, keys, placement, scheduler

ZONES = ("east", "west", "north", "south")


def nodes(count: int) -> list[placement.Node]:
    return [placement.Node(f"n{i:03}", f"host{i:03}", ip=f"10.0.{i // 250}.{i % 250 + 1}",
                           labels=(("rack", f"r{i % 10}"), ("zone", ZONES[i % 4])))
            for i in range(count)]


def services(replicas: int) -> list[placement.Service]:
    """50 services sharing `replicas` between them: a mix of constraints, spread, limits and
    fixed ports, as a large stack has."""
    per = replicas // 50
    made = []
    for i in range(50):
        made.append(placement.Service(
            f"svc{i:02}", per,
            constraints=(f"node.labels.zone!={ZONES[i % 4]}",) if i % 3 == 0 else (),
            spread=("node.labels.rack",) if i % 2 == 0 else (),
            max_per_node=2 if i % 5 == 0 else 0,
            ports=(f"{8000 + i}/tcp",) if i % 7 == 0 else ()))
    return made


def timed(runs: int, work) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def show(what: str, times: list[float]) -> None:
    print(f"{what}: median {statistics.median(times) * 1000:.1f} ms, "
          f"min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {len(times)} runs")


def bench_placement(node_count: int, replicas: int, runs: int) -> None:
    cluster, wanted = nodes(node_count), services(replicas)
    first = placement.place(cluster, wanted, {})
    print(f"placed {len(first.assignments)} of {replicas} replicas on {node_count} nodes, "
          f"{len(first.errors)} services short")
    show("placement, first", timed(runs, lambda: placement.place(cluster, wanted, {})))
    show("placement, unchanged", timed(runs, lambda: placement.place(
        cluster, wanted, first.assignments)))
    dead = {n.id for n in cluster[:10]}
    after = [placement.Node(n.id, n.hostname, ip=n.ip, labels=n.labels, ready=n.id not in dead)
             for n in cluster]
    moved = placement.place(after, wanted, first.assignments)
    print(f"10 nodes down: {placement.moves(first.assignments, moved.assignments)} replicas "
          "moved")
    show("placement, 10 nodes down", timed(runs, lambda: placement.place(
        after, wanted, first.assignments)))


async def bench_etcd(node_count: int, replicas: int, runs: int) -> None:
    from tests.cluster import etcd_harness

    base = Path(tempfile.mkdtemp(prefix="pcompose-bench-etcd-"))
    cluster = etcd_harness.EtcdCluster(1, base)
    try:
        cluster.start()
        async with etcd.Client(cluster.endpoints) as client:
            lease = await client.grant(600)
            for node in nodes(node_count):
                await client.put(keys.node_spec(node.id), json.dumps({
                    "name": node.hostname, "labels": dict(node.labels)}))
                await client.put(keys.node_status(node.id), json.dumps({
                    "hostname": node.hostname, "address": node.ip,
                    "platform": "linux/x86_64"}), lease=lease)
            stack = {"services": {s.name: _compose(s) for s in services(replicas)}}
            await client.put(desired.project("bench"), desired.record("bench", 1, stack))
            await client.create(desired.LEADER, "bench", lease=lease)
            instance = scheduler.Scheduler(client, "bench")
            start = time.perf_counter()
            await instance.schedule(lease)
            first = time.perf_counter() - start
            assert instance.last is not None
            print(f"scheduler pass with etcd, first: {first * 1000:.1f} ms "
                  f"({instance.last.puts} assignments written)")
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                await instance.schedule(lease)
                times.append(time.perf_counter() - start)
            show("scheduler pass with etcd, unchanged", times)
    finally:
        cluster.stop()


def _compose(service: placement.Service) -> dict:
    """A normalized compose service with the same wishes."""
    where: dict = {"constraints": list(service.constraints),
                   "preferences": [{"spread": s} for s in service.spread]}
    if service.max_per_node:
        where["max_replicas_per_node"] = service.max_per_node
    made: dict = {"image": "busybox", "deploy": {"replicas": service.replicas,
                                                 "placement": where}}
    if service.ports:
        made["ports"] = [{"target": 80, "published": p.split("/")[0], "protocol": "tcp"}
                         for p in service.ports]
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--etcd", action="store_true", help="also a whole pass against etcd")
    args = parser.parse_args()
    bench_placement(args.nodes, args.replicas, args.runs)
    if args.etcd:
        asyncio.run(bench_etcd(args.nodes, args.replicas, args.runs))


if __name__ == "__main__":
    main()
