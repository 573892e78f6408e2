"""The scheduler against a real etcd, with nodes faked as keys (a spec, and a status under a
lease that the test revokes to take the node down): it writes assignments where placement
says, follows labels and availability, moves replicas off a node down past its grace period,
hands over to another instance when its own dies, and records why a service has no node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from reconciler.cluster import desired, etcd, keys, membership, scheduler
from tests.cluster.agent_hosts import Host, join
from tests.cluster.etcd_harness import EtcdCluster
from tests.support import waiting

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """The scheduler's time, moved by the test: grace periods pass when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add_node(client: etcd.Client, node_id: str, *, labels: dict[str, str] | None = None,
                   availability: str = "active") -> int:
    """A node as an agent would register it; the lease that keeps it Ready is returned."""
    await client.put(keys.node_spec(node_id), json.dumps({
        "name": node_id, "role": "worker", "availability": availability,
        "labels": labels or {}}))
    lease = await client.grant(300)
    await client.put(keys.node_status(node_id), json.dumps({
        "hostname": node_id, "address": "192.0.2.1", "platform": "linux/x86_64",
        "engine_labels": {}}), lease=lease)
    return lease


async def put_project(client: etcd.Client, name: str, services: dict, generation: int = 1
                      ) -> None:
    await client.put(desired.project(name), desired.record(name, generation,
                                                          {"name": name, "services": services}))


async def assigned(client: etcd.Client) -> dict[tuple[str, str, int], str]:
    """(project, service, slot) -> node, as the agents would read it."""
    _, kvs = await client.range(desired.ASSIGNMENTS)
    found = {}
    for kv in kvs:
        a = desired.parse_assignment(kv.key)
        assert a is not None, kv.key
        assert (a.project, a.service, a.slot) not in found, "a slot on two nodes"
        found[(a.project, a.service, a.slot)] = a.node
    return found


async def status(client: etcd.Client, name: str) -> dict:
    kv = await client.get(desired.project_status(name))
    return kv.json() if kv else {}


def reaches(client: etcd.Client, want: Callable[[dict], bool]) -> Callable:
    async def check() -> bool:
        return want(await assigned(client))
    return check


@contextlib.asynccontextmanager
async def running(endpoints: list[str], identity: str, **kw: object
                  ) -> AsyncIterator[scheduler.Scheduler]:
    """A scheduler with its own client, stopped (and its lease revoked) at the end."""
    client = etcd.Client(endpoints)
    instance = scheduler.Scheduler(client, identity, **kw)  # type: ignore[arg-type]
    task = asyncio.ensure_future(instance.run())
    try:
        yield instance
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


WEB_AND_DB = {
    "web": {"image": "busybox", "deploy": {"replicas": 2, "placement": {
        "constraints": ["node.labels.zone==east"]}}},
    "db": {"image": "busybox", "volumes": [{"type": "volume", "source": "data",
                                            "target": "/data"}],
           "deploy": {"placement": {"constraints": ["node.hostname==c"]}}},
}


async def test_assignments_follow_constraints_labels_and_drain(etcd1: EtcdCluster):
    async with etcd.Client(etcd1.endpoints) as client:
        await add_node(client, "a", labels={"zone": "east"})
        await add_node(client, "b", labels={"zone": "East"})
        await add_node(client, "c", labels={"zone": "west"})
        async with running(etcd1.endpoints, "s1"):
            await put_project(client, "shop", WEB_AND_DB)
            await waiting.until(reaches(client, lambda a: a == {
                ("shop", "web", 1): "a", ("shop", "web", 2): "b", ("shop", "db", 1): "c"}),
                what="the first placement")
            assert (await status(client, "shop"))["errors"] == {}

            # b is relabelled out of the zone: its web replica moves, nothing else does.
            await membership.update_node(client, "b", membership.Update(
                label_add=(("zone", "west"),)))
            await waiting.until(reaches(client, lambda a: a == {
                ("shop", "web", 1): "a", ("shop", "web", 2): "a", ("shop", "db", 1): "c"}),
                what="web 2 to leave the relabelled node")

            # c drained: db has nowhere to go, and says why.
            await membership.update_node(client, "c", membership.Update(availability="drain"))
            await waiting.until(reaches(client, lambda a: ("shop", "db", 1) not in a),
                                what="db to leave the drained node")
            errors = (await status(client, "shop"))["errors"]
            assert errors["db"].startswith("service db: 1 of 1 replicas can't be placed")
            assert "c: drained" in errors["db"]

            # down removes the project: every assignment and its status go.
            await client.delete(desired.project("shop"))
            await waiting.until(reaches(client, lambda a: a == {}), what="the assignments gone")
            await waiting.until(lambda: _absent(client, desired.project_status("shop")),
                                what="the status gone")


async def _absent(client: etcd.Client, key: str) -> bool:
    return await client.get(key) is None


async def test_a_node_down_past_its_grace_period_loses_its_replicas(etcd1: EtcdCluster):
    clock = Clock()
    async with etcd.Client(etcd1.endpoints) as client:
        leases = {n: await add_node(client, n) for n in ("a", "b", "c")}
        async with running(etcd1.endpoints, "s1", grace=30.0, clock=clock) as instance:
            await put_project(client, "shop", {
                "web": {"image": "busybox", "deploy": {"replicas": 2, "placement": {
                    "constraints": ["node.hostname!=c"]}}}})
            first = {("shop", "web", 1): "a", ("shop", "web", 2): "b"}
            await waiting.until(reaches(client, lambda a: a == first), what="the placement")

            await client.revoke(leases["a"])  # a's agent died: its status key is gone
            await waiting.until(lambda: "a" in instance.down_nodes, what="a seen down")
            seen = instance.passes
            instance.poke()  # a pass that surely knows a is down, done
            await waiting.until(lambda: instance.passes > seen, what="that pass written")
            assert await assigned(client) == first  # inside the grace period: kept

            # The cluster's own setting wins over the instance's 30 s.
            await client.put(keys.CONFIG, json.dumps({"scheduler_grace": 5}))
            clock.now += 6
            # c is excluded by the constraint: both replicas on b now.
            await waiting.until(reaches(client, lambda a: a == {
                ("shop", "web", 1): "b", ("shop", "web", 2): "b"}), what="web 1 moved to b")

            # a comes back: nothing moves back (no rebalancing), no slot is duplicated.
            await add_node(client, "a")
            await waiting.until(lambda: "a" not in instance.down_nodes, what="a seen up")
            assert await assigned(client) == {("shop", "web", 1): "b", ("shop", "web", 2): "b"}


LEADER_SCRIPT = """
import asyncio, sys
from reconciler.cluster import etcd, scheduler
async def main():
    await scheduler.Scheduler(etcd.Client(sys.argv[1].split(",")), sys.argv[2]).run()
asyncio.run(main())
"""


async def test_a_dead_leader_is_replaced_within_15_seconds(etcd1: EtcdCluster):
    async with etcd.Client(etcd1.endpoints) as client:
        for n in ("a", "b", "c"):
            await add_node(client, n)
        # The first leader in a process of its own, so that it can die as a host dies.
        first = subprocess.Popen([sys.executable, "-c", LEADER_SCRIPT,
                                  ",".join(etcd1.endpoints), "first"], cwd=REPO,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            await waiting.until(lambda: _leader_is(client, "first"), what="first elected")
            await put_project(client, "shop", {"web": {"image": "busybox", "scale": 3}})
            await waiting.until(reaches(client, lambda a: len(a) == 3), what="placement")
            before = await assigned(client)
            async with running(etcd1.endpoints, "second") as second:
                await waiting.until(lambda: _leader_is(client, "first"), what="still first")
                assert not second.leading.is_set()
                os.kill(first.pid, signal.SIGKILL)
                first.wait()
                await waiting.until(second.leading.is_set, timeout=15.0,
                                    what="the second to take over")
                assert await _leader_is(client, "second")
                assert await assigned(client) == before  # resumed from etcd: nothing moved
                await put_project(client, "shop", {"web": {"image": "busybox", "scale": 4}},
                                  generation=2)
                await waiting.until(reaches(client, lambda a: len(a) == 4
                                            and all(a[k] == v for k, v in before.items())),
                                    what="the new leader to place the fourth replica")
        finally:
            if first.poll() is None:
                os.kill(first.pid, signal.SIGKILL)
                first.wait()


async def _leader_is(client: etcd.Client, identity: str) -> bool:
    kv = await client.get(desired.LEADER)
    return kv is not None and kv.json()["identity"] == identity


@pytest.mark.parametrize(("constraint", "message"), [
    ("node.labels.zone==north",
     "service web: no node meets its constraints (a: constraint node.labels.zone==north not "
     "met (node.labels.zone is 'east'))"),
    ("node.lables.zone==east", "unknown constraint key 'node.lables.zone'"),
])
async def test_an_impossible_constraint_is_recorded_for_the_project(
        etcd1: EtcdCluster, constraint: str, message: str):
    async with etcd.Client(etcd1.endpoints) as client:
        await add_node(client, "a", labels={"zone": "east"})
        async with running(etcd1.endpoints, "s1"):
            await put_project(client, "shop", {
                "web": {"image": "busybox", "deploy": {"placement": {
                    "constraints": [constraint]}}},
                "cache": {"image": "busybox"}})
            found = await waiting.until(lambda: _status_error(client, "web"),
                                        what="the error recorded")
            assert message in found
            assert found.startswith("service web: ")
            assert await assigned(client) == {("shop", "cache", 1): "a"}


async def _status_error(client: etcd.Client, service: str) -> str:
    return (await status(client, "shop")).get("errors", {}).get(service, "")


# -- with real agents: `up` and `down` in a cluster, the scheduler run by the agents

STACK = """\
services:
  web:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["{constraint}"]
"""


def test_up_in_a_cluster_is_checked_published_scheduled_and_down_withdraws_it(
        etcd1: EtcdCluster, hosts: list[Host], busybox_archive: Path):
    host = join(hosts, etcd1, "h1", "10.99.0.1", "zone=a")
    host.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    name = host.stack.project
    node_id = host.stack.root.joinpath(membership.ID_FILE).read_text().strip()

    host.stack.write(STACK.format(constraint="engine.lables.zone==a"))
    typo = host.stack.pc("up", "-d", check=False)
    assert typo.returncode != 0
    assert "service web: unknown constraint key 'engine.lables.zone'" in typo.stderr
    host.stack.write(STACK.format(constraint="engine.labels.zone==b"))
    nowhere = host.stack.pc("up", "-d", check=False)
    assert nowhere.returncode != 0
    assert ("service web: no node meets its constraints (h1: constraint engine.labels.zone==b "
            "not met (engine.labels.zone is 'a'))") in nowhere.stderr
    assert asyncio.run(_get(etcd1, desired.project(name))) is None  # refused: nothing stored

    host.stack.write(STACK.format(constraint="engine.labels.zone==a").replace(
        "      placement:\n", "      replicas: 2\n      placement:\n        "
        "max_replicas_per_node: 1\n"))
    up = host.stack.pc("up", "-d")
    # The scheduler's verdict is the user's to see; what it placed here runs at once.
    assert ("service web: 1 of 2 replicas can't be placed (h1: max_replicas_per_node 1 "
            "reached)") in up.stderr
    assert running_here(host, name) == [f"{name}-web-1"]
    record = asyncio.run(_get(etcd1, desired.project(name)))
    assert record is not None and record["stack"]["services"]["web"]["deploy"]["placement"]
    # The agent's own scheduler (the only node, so the leader) assigns the replica to it.
    slot = desired.assignment(node_id, name, "web", 1)
    waiting.wait_for(lambda: asyncio.run(_get(etcd1, slot)) is not None, timeout=30,
                     what="the replica assigned to h1")

    host.stack.pc("down", "-t", "0")
    assert asyncio.run(_get(etcd1, desired.project(name))) is None
    waiting.wait_for(lambda: asyncio.run(_get(etcd1, slot)) is None, timeout=30,
                     what="the assignment removed")

    etcd1.kill(0)  # no store: an `up` can't be placed, and says so rather than run here alone
    lost = host.stack.pc("up", "-d", check=False)
    assert lost.returncode != 0 and "the cluster's store is unavailable" in lost.stderr
    assert running_here(host, name) == []


async def _get(cluster: EtcdCluster, key: str) -> dict | None:
    async with etcd.Client(cluster.endpoints) as client:
        found = await client.get(key)
        return found.json() if found else None


SPREAD = """\
services:
  web:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  db:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["engine.labels.zone==b"]
"""


def running_here(host: Host, project: str) -> list[str]:
    done = host.stack.pc("-p", project, "ps", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return sorted(row["Name"] for row in rows if row.get("State") == "running")


def test_each_agent_runs_the_replicas_assigned_to_its_node(
        etcd1: EtcdCluster, hosts: list[Host], busybox_archive: Path):
    h1 = join(hosts, etcd1, "h1", "10.99.0.1", "zone=a")
    h2 = join(hosts, etcd1, "h2", "10.99.0.2", "zone=b")
    for host in (h1, h2):
        host.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    waiting.wait_for(lambda: all(n["Status"] == "Ready" for n in h1.nodes())
                     and len(h1.nodes()) == 2, timeout=30, what="both nodes Ready")
    name = h1.stack.project
    h1.stack.write(SPREAD)
    h1.stack.pc("up", "-d")
    # db only fits h2; web's two replicas one per node, numbered cluster-wide.
    waiting.wait_for(lambda: running_here(h1, name) == [f"{name}-web-1"]
                     and running_here(h2, name) == [f"{name}-db-1", f"{name}-web-2"],
                     timeout=90, what="each replica running on its node")

    h2.stack.pc("-p", name, "down", "-t", "0")  # from the other host: gone everywhere
    waiting.wait_for(lambda: running_here(h1, name) == [] and running_here(h2, name) == [],
                     timeout=60, what="every replica gone")


def test_replicas_of_a_dead_host_run_elsewhere_and_it_holds_no_duplicate_when_back(
        etcd1: EtcdCluster, hosts: list[Host], busybox_archive: Path):
    asyncio.run(_put(etcd1, keys.CONFIG, json.dumps({"scheduler_grace": 1})))
    joining = ("--cluster", ",".join(etcd1.endpoints), "--node-name", "h2",
               "--advertise-addr", "10.99.0.2")
    h1 = join(hosts, etcd1, "h1", "10.99.0.1")
    h2 = join(hosts, etcd1, "h2", "10.99.0.2")
    for host in (h1, h2):
        host.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    waiting.wait_for(lambda: len(h1.nodes()) == 2
                     and all(n["Status"] == "Ready" for n in h1.nodes()),
                     timeout=30, what="both nodes Ready")
    name = h1.stack.project
    h1.stack.write(SPREAD.replace("        max_replicas_per_node: 1\n", "").split("  db:")[0])
    h1.stack.pc("up", "-d")
    waiting.wait_for(lambda: running_here(h1, name) == [f"{name}-web-1"]
                     and running_here(h2, name) == [f"{name}-web-2"],
                     timeout=90, what="one replica on each node")

    h2.kill_agent()  # as far as the cluster can tell, h2 died (its container lives on)
    # Down after the lease's TTL, moved after the grace period, then started by h1.
    waiting.wait_for(lambda: running_here(h1, name) == [f"{name}-web-1", f"{name}-web-2"],
                     timeout=membership.TTL + 1 + 30, what="web 2 running on h1")

    h2.start_agent(*joining)  # back: what is no longer its own goes
    waiting.wait_for(lambda: running_here(h2, name) == [], timeout=60,
                     what="h2 to remove its stale copy of web 2")
    assert running_here(h1, name) == [f"{name}-web-1", f"{name}-web-2"]
    h1.stack.pc("down", "-t", "0")


async def _put(cluster: EtcdCluster, key: str, value: str) -> None:
    async with etcd.Client(cluster.endpoints) as client:
        await client.put(key, value)


def test_the_schedulers_agent_killed_another_is_elected_and_up_converges(
        etcd1: EtcdCluster, hosts: list[Host], busybox_archive: Path):
    h1 = join(hosts, etcd1, "h1", "10.99.0.1")
    h2 = join(hosts, etcd1, "h2", "10.99.0.2")
    ids = {h: h.stack.root.joinpath(membership.ID_FILE).read_text().strip() for h in (h1, h2)}

    def leader() -> str | None:
        found = asyncio.run(_get(etcd1, desired.LEADER))
        return found["identity"] if found else None

    elected = waiting.wait_for(leader, timeout=30, what="a scheduler elected")
    dead, alive = (h1, h2) if elected == ids[h1] else (h2, h1)
    alive.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    dead.kill_agent()
    waiting.wait_for(lambda: leader() == ids[alive], timeout=15,
                     what="the other agent elected within 15 s")

    name = alive.stack.project
    alive.stack.write(SPREAD.replace("        max_replicas_per_node: 1\n", "").split("  db:")[0])
    up = alive.stack.pc("up", "-d")
    # The dead node is inside its grace period: it keeps nothing new, the live one runs both.
    assert running_here(alive, name) == [f"{name}-web-1", f"{name}-web-2"], up.stderr
    alive.stack.pc("down", "-t", "0")
