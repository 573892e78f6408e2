"""Rolling updates in a cluster: a changed service with update_config takes the new definition
one replica at a time; when the new one exits 1, `failure_action: rollback` brings the previous
generation back and the replica not reached yet is never touched; a good change rolls through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.agent import cluster_rollout
from reconciler.cluster import etcd
from tests.cluster import agent_hosts
from tests.cluster.agent_hosts import Host
from tests.cluster.etcd_harness import EtcdCluster
from tests.support import waiting

STACK = """\
services:
  web:
    image: busybox:latest
    command: {command}
    deploy:
      replicas: 2
      placement: {{max_replicas_per_node: 1}}
      update_config: {{parallelism: 1, delay: 1s, monitor: 2s, failure_action: rollback}}
"""


@pytest.fixture
def hosts(etcd1: EtcdCluster, busybox_archive: Path) -> Iterator[list[Host]]:
    yield from agent_hosts.two_nodes(etcd1, busybox_archive)


def replicas(hosts: list[Host], project: str) -> dict[str, dict]:
    """name -> its ps row, from each host's own containers."""
    found = {}
    for host in hosts:
        done = host.stack.pc("-p", project, "ps", "-a", "--format", "json")
        for row in map(json.loads, done.stdout.splitlines()):
            found[row["Name"]] = row
    return found


def rollout(etcd1: EtcdCluster, project: str) -> dict:
    async def read() -> dict:
        async with etcd.Client(etcd1.endpoints) as client:
            return await cluster_rollout.read(client, project) or {}
    return asyncio.run(read())


def running(rows: dict[str, dict], word: str) -> bool:
    return len(rows) == 2 and all(r["State"] == "running" and word in r["Command"]
                                  for r in rows.values())


def test_a_failing_update_rolls_back_and_a_good_one_rolls_through(
        hosts: list[Host], etcd1: EtcdCluster):
    h1, _ = hosts
    name = h1.stack.project
    h1.stack.write(STACK.format(command='["sleep", "3600"]'))
    h1.stack.pc("up", "-d")
    waiting.wait_for(lambda: running(replicas(hosts, name), "3600"), timeout=90,
                     what="both replicas of generation 1")
    first = {n: r["ID"] for n, r in replicas(hosts, name).items()}

    # A new definition that exits 1: the first replica takes it, fails, and all roll back.
    h1.stack.write(STACK.format(command='["sh", "-c", "exit 1"]'))
    h1.stack.pc("up", "-d")
    waiting.wait_for(lambda: rollout(etcd1, name).get("state") == "rolled_back", timeout=90,
                     what="the rollout rolled back")
    state = rollout(etcd1, name)
    assert "exited with code 1" in state["reason"]
    assert sum(len(slots) for slots in state["services"].values()) == 1  # parallelism 1
    waiting.wait_for(lambda: running(replicas(hosts, name), "3600"), timeout=90,
                     what="both replicas back on generation 1")
    after = {n: r["ID"] for n, r in replicas(hosts, name).items()}
    assert sum(after[n] != first[n] for n in first) == 1, "only the first batch was touched"

    # A good change rolls through, one replica after the other.
    h1.stack.write(STACK.format(command='["sleep", "3601"]'))
    h1.stack.pc("up", "-d")
    waiting.wait_for(lambda: rollout(etcd1, name).get("state") == "completed", timeout=90,
                     what="the rollout completed")
    waiting.wait_for(lambda: running(replicas(hosts, name), "3601"), timeout=60,
                     what="both replicas on the new definition")
    final = {n: r["ID"] for n, r in replicas(hosts, name).items()}
    assert all(final[n] != after[n] for n in after)

    h1.stack.pc("-p", name, "down", "-t", "0")
    waiting.wait_for(lambda: replicas(hosts, name) == {}, timeout=60, what="every replica gone")
    assert rollout(etcd1, name) == {}
