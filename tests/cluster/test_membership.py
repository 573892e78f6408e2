"""Nodes of a cluster: agents on simulated hosts register in etcd, `pcompose node ls` shows
them Ready and a dead one Down within the lease's TTL, labels are edited, a down node removed;
a node that lost its lease registers again with everything that lived under it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from reconciler.cluster import etcd, keys, membership
from tests.cluster.agent_hosts import Host, join
from tests.cluster.etcd_harness import EtcdCluster
from tests.support import waiting


async def stored(client: etcd.Client, key: str) -> etcd.KV:
    found = await client.get(key)
    assert found is not None, f"{key} is not in etcd"
    return found


def by_name(nodes: list[dict]) -> dict[str, dict]:
    return {n["Hostname"]: n for n in nodes}


def test_two_hosts_are_ready_then_one_dies_and_is_removed(etcd1: EtcdCluster, hosts):
    h1 = join(hosts, etcd1, "h1", "10.99.0.1", "zone=a")
    h2 = join(hosts, etcd1, "h2", "10.99.0.2", "zone=b")

    def both_ready() -> dict[str, dict] | None:
        nodes = by_name(h1.nodes())
        ready = all(nodes.get(h, {}).get("Status") == "Ready" for h in ("h1", "h2"))
        return nodes if ready else None

    listed = waiting.wait_for(both_ready, timeout=30, what="both nodes Ready")
    assert listed["h1"]["Self"] is True and listed["h2"]["Self"] is False
    assert (listed["h1"]["Address"], listed["h1"]["EngineLabels"]) == ("10.99.0.1", "zone=a")
    assert (listed["h2"]["Address"], listed["h2"]["EngineLabels"]) == ("10.99.0.2", "zone=b")
    assert listed["h2"]["Availability"] == "Active" and listed["h2"]["Role"] == "worker"
    # The id is this host's for good: kept in its state root, root's only.
    id_file = h1.stack.root / membership.ID_FILE
    assert id_file.read_text().strip() == listed["h1"]["ID"]
    assert id_file.stat().st_mode & 0o777 == 0o600
    table = h2.stack.pc("node", "ls").stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "HOSTNAME", "ADDRESS", "STATUS"]
    assert f"{listed['h2']['ID']} *" in table

    h1.stack.pc("node", "update", "--label-add", "tier=db", "--label-add", "ssd=yes", "h2")
    assert by_name(h2.nodes())["h2"]["Labels"] == "ssd=yes,tier=db"
    h2.stack.pc("node", "update", "--label-rm", "ssd", listed["h2"]["ID"][:6])
    assert by_name(h1.nodes())["h2"]["Labels"] == "tier=db"
    missing = h1.stack.pc("node", "update", "--label-rm", "nope", "h2", check=False)
    assert missing.returncode == 1 and "label nope does not exist" in missing.stderr

    refused = h1.stack.pc("node", "rm", "h2", check=False)
    assert refused.returncode == 1 and "is not down" in refused.stderr
    assert by_name(h1.nodes())["h2"]["Status"] == "Ready"

    h2.kill_agent()
    killed = time.monotonic()
    waiting.wait_for(lambda: by_name(h1.nodes())["h2"]["Status"] == "Down",
                     timeout=membership.TTL + 2, what="h2 Down within the lease's TTL + 2 s")
    assert time.monotonic() - killed <= membership.TTL + 2
    down = by_name(h1.nodes())["h2"]
    assert down["Labels"] == "tier=db"  # the admin's spec outlives the host's status

    h1.stack.pc("node", "rm", "h2")
    assert set(by_name(h1.nodes())) == {"h1"}


def test_an_agent_without_cluster_says_so(hosts):
    host = Host()
    hosts.append(host)
    host.start_agent()  # exactly as without a cluster: it starts and serves
    done = host.stack.pc("node", "ls", check=False)
    assert done.returncode == 1 and "not in a cluster" in done.stderr
    assert host.stack.agent_pid() == host.agent.pid  # still serving


def test_cluster_flags_are_checked(hosts):
    host = Host()
    hosts.append(host)
    done = host.stack.pc("agent", "--cluster", "http://127.0.0.1:9", check=False)
    assert done.returncode == 1 and "--advertise-addr" in done.stderr
    done = host.stack.pc("agent", "--node-name", "x", check=False)
    assert done.returncode == 1 and "needs --cluster" in done.stderr


async def test_a_lost_lease_registers_again_in_one_transaction(etcd1: EtcdCluster,
                                                               tmp_path: Path):
    config = membership.Config(tuple(etcd1.endpoints), "h1", "10.99.0.1", (("zone", "a"),))
    node_id = membership.node_id(tmp_path)
    assert membership.node_id(tmp_path) == node_id  # read back, not made again
    async with etcd.Client(etcd1.endpoints) as client:
        member = membership.Membership(client, node_id, config, ttl=3)
        vtep = keys.vtep("n1", node_id)
        member.extra.append(lambda: [(vtep, '{"subnet": "10.1.2.0/24"}')])
        running = asyncio.ensure_future(member.run())
        try:
            await asyncio.wait_for(member.registered.wait(), 10)
            first = member.lease_id
            status = await stored(client, keys.node_status(node_id))
            assert status is not None and status.lease == first
            assert json.loads(status.value)["engine_labels"] == {"zone": "a"}
            assert (await stored(client, vtep)).lease == first
            await client.put(keys.node_spec(node_id), json.dumps(
                {"name": "h1", "role": "worker", "availability": "active",
                 "labels": {"kept": "yes"}}))

            await client.revoke(first)  # as when etcd expired it during an outage
            assert await client.get(vtep) is None

            async def registered_again() -> etcd.KV:
                while True:
                    found = await client.get(keys.node_status(node_id))
                    if found is not None and found.lease not in (0, first):
                        return found
                    await asyncio.sleep(0.1)

            again = await asyncio.wait_for(registered_again(), 15)
            assert (await stored(client, vtep)).mod_revision == again.mod_revision  # one txn
            spec = json.loads((await stored(client, keys.node_spec(node_id))).value)
            assert spec["labels"] == {"kept": "yes"}  # the admin's spec is not made again
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def test_an_etcd_outage_fails_node_verbs_then_the_node_registers_again(etcd1: EtcdCluster,
                                                                       hosts):
    h1 = join(hosts, etcd1, "h1", "10.99.0.1")
    waiting.wait_for(lambda: by_name(h1.nodes()).get("h1", {}).get("Status") == "Ready",
                     timeout=30, what="h1 Ready")
    etcd1.kill(0)
    done = h1.stack.pc("node", "ls", check=False)
    assert done.returncode == 1 and "the cluster store is unavailable" in done.stderr
    # A TTL without a keepalive: the agent no longer counts on its lease, and lives on.
    waiting.wait_for(lambda: "node.lease_lost" in h1.log(), timeout=membership.TTL + 10,
                     what="the agent to give its lease up")
    assert h1.agent is not None and h1.agent.poll() is None
    etcd1.restart(0)
    waiting.wait_for(lambda: h1.log().count("node.registered") >= 2, timeout=30,
                     what="h1 registered again under a new lease")
    assert by_name(h1.nodes())["h1"]["Status"] == "Ready"


def test_an_agent_joins_over_tls_with_a_client_certificate(etcd_tls: EtcdCluster, hosts):
    certs = etcd_tls.certs
    assert certs is not None
    host = join(hosts, etcd_tls, "h1", "10.99.0.1", flags=(
        "--cluster-ca", certs.ca, "--cluster-cert", certs.client_cert,
        "--cluster-key", certs.client_key))
    waiting.wait_for(lambda: by_name(host.nodes()).get("h1", {}).get("Status") == "Ready",
                     timeout=30, what="h1 Ready over TLS")
