"""depends_on across hosts: a service on h1 that depends on one placed on h2 starts only once
the condition holds there, read from the status h2's agent publishes under its lease
(service_healthy, service_completed_successfully; a failed one-shot holds its dependent)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.agent import cluster_depends
from reconciler.cluster import etcd
from tests.cluster import agent_hosts
from tests.cluster.agent_hosts import Host
from tests.cluster.etcd_harness import EtcdCluster
from tests.support import waiting

STACK = """\
services:
  db:
    image: busybox:latest
    command: ["sleep", "3600"]
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 1s, retries: 1}
    deploy: {placement: {constraints: ["node.hostname==h2"]}}
  web:
    image: busybox:latest
    command: ["sleep", "3600"]
    depends_on: {db: {condition: service_healthy}}
    deploy: {placement: {constraints: ["node.hostname==h1"]}}
  migrate:
    image: busybox:latest
    command: ["true"]
    restart: "no"
    deploy: {placement: {constraints: ["node.hostname==h2"]}}
  app:
    image: busybox:latest
    command: ["sleep", "3600"]
    depends_on: {migrate: {condition: service_completed_successfully}}
    deploy: {placement: {constraints: ["node.hostname==h1"]}}
  broken:
    image: busybox:latest
    command: ["false"]
    restart: "no"
    deploy: {placement: {constraints: ["node.hostname==h2"]}}
  never:
    image: busybox:latest
    command: ["sleep", "3600"]
    depends_on: {broken: {condition: service_completed_successfully}}
    deploy: {placement: {constraints: ["node.hostname==h1"]}}
"""


@pytest.fixture
def hosts(etcd1: EtcdCluster, busybox_archive: Path) -> Iterator[list[Host]]:
    yield from agent_hosts.two_nodes(etcd1, busybox_archive)


def states(host: Host, project: str) -> dict[str, tuple[str, str]]:
    """service -> (state, health) of the project's containers on `host` itself."""
    done = host.stack.pc("-p", project, "ps", "-a", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {r["Service"]: (r["State"], r["Health"]) for r in rows}


def published(etcd1: EtcdCluster, project: str) -> dict[str, list[dict]]:
    async def read() -> dict[str, list[dict]]:
        async with etcd.Client(etcd1.endpoints) as client:
            return await cluster_depends.cluster_status(client, project)
    return asyncio.run(read())


def test_conditions_on_another_host_hold_from_its_published_status(
        hosts: list[Host], etcd1: EtcdCluster):
    h1, h2 = hosts
    name = h1.stack.project
    h1.stack.write(STACK)
    h1.stack.pc("up", "-d")

    # h2 runs db (not healthy yet), migrate (done) and broken (failed); h2 publishes them.
    waiting.wait_for(lambda: states(h2, name).get("db", ("",))[0] == "running"
                     and states(h2, name).get("migrate", ("",))[0] == "exited"
                     and states(h2, name).get("broken", ("",))[0] == "exited",
                     timeout=90, what="h2's services")
    waiting.wait_for(lambda: {s["state"] for s in published(etcd1, name).get("broken", [])}
                     == {"exited"}, timeout=30, what="broken's exit published")
    # app's dependency completed on h2: app runs on h1.
    waiting.wait_for(lambda: states(h1, name).get("app", ("",))[0] == "running", timeout=60,
                     what="app once migrate completed on h2")
    status = published(etcd1, name)
    assert [(s["node"], s["state"], s["exit_code"]) for s in status["migrate"]] == \
        [("h2", "exited", 0)]
    assert status["db"][0]["health"] != "healthy"
    # db is not healthy and broken failed: web and never are not made on h1.
    here = states(h1, name)
    assert "web" not in here and "never" not in here, here
    assert "cluster.waiting_for_dependency" in h1.log()

    # db becomes healthy on h2: web starts on h1; never still waits for broken.
    h2.stack.pc("-p", name, "exec", "-T", "db", "touch", "/tmp/ready")
    waiting.wait_for(lambda: states(h1, name).get("web", ("",))[0] == "running", timeout=60,
                     what="web once db is healthy on h2")
    assert published(etcd1, name)["db"][0]["health"] == "healthy"
    assert "never" not in states(h1, name)

    h1.stack.pc("-p", name, "down", "-t", "0")
    waiting.wait_for(lambda: states(h1, name) == {} and states(h2, name) == {}, timeout=60,
                     what="every replica gone")
    waiting.wait_for(lambda: published(etcd1, name) == {}, timeout=30,
                     what="the published status gone with them")
