"""Cluster tests: a real etcd (tests/cluster/etcd_harness.py) and, for the agents, the e2e
machines (a state root, run dir and simulated host each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import agent_hosts
from tests.cluster.etcd_harness import etcd1, etcd3, etcd_tls  # noqa: F401 (fixtures)
from tests.e2e.conftest import busybox_archive  # noqa: F401 (fixtures)


@pytest.fixture
def hosts() -> Iterator[list[agent_hosts.Host]]:
    """Simulated hosts the test joins (agent_hosts.join), each removed after."""
    yield from agent_hosts.removed_after()
