"""The etcd client against a real etcd: keys, transactions, leases and watches, and what a
store under faults does to them (a member killed or stopped, compaction, TLS)."""

from __future__ import annotations

import asyncio
import json

import pytest

from reconciler.cluster import etcd
from tests.cluster.etcd_harness import EtcdCluster


async def stored(client: etcd.Client, key: str) -> etcd.KV:
    found = await client.get(key)
    assert found is not None, f"{key} is not in etcd"
    return found


async def test_keys_ranges_and_transactions(etcd1: EtcdCluster):
    async with etcd.Client(etcd1.endpoints) as client:
        first = await client.put("/t/a", "1")
        assert (await stored(client, "/t/a")).value == b"1"
        assert await client.get("/t/missing") is None
        for i in range(25):
            await client.put(f"/t/many/{i:03}", json.dumps({"i": i}))
        revision, kvs = await client.range("/t/many/", limit=7)  # four pages at one revision
        assert [kv.json()["i"] for kv in kvs] == list(range(25))
        await client.put("/t/many/999", "later")
        assert (await client.range("/t/many/", revision=revision))[1] == kvs
        assert await client.delete("/t/many/", prefix=True) == 26
        assert (await client.range("/t/many/"))[1] == []

        assert await client.create("/t/claim", "node-1") is True
        assert await client.create("/t/claim", "node-2") is False
        # A retry of a create whose answer was lost finds its own value: it had won.
        assert await client.create("/t/claim", "node-1") is True
        won, _ = await client.txn([etcd.compare("/t/a", "mod", "=", first)],
                                  [etcd.put_op("/t/a", "2")])
        assert won and (await stored(client, "/t/a")).value == b"2"
        won, responses = await client.txn([etcd.compare("/t/a", "value", "=", "1")],
                                          [etcd.put_op("/t/a", "3")], [etcd.range_op("/t/a")])
        assert not won and etcd.kvs_of(responses[0])[0].value == b"2"


async def test_nothing_answers_is_unavailable():
    async with etcd.Client(["http://127.0.0.1:9"], timeout=0.5) as client:
        with pytest.raises(etcd.Unavailable):
            await client.put("/t/a", "1")


async def test_kill_9_of_the_member_in_use(etcd3: EtcdCluster):
    async with etcd.Client(etcd3.endpoints) as client:
        await client.put("/t/before", "1")
        used = client.endpoint
        etcd3.kill(etcd3.index_of(used))
        await client.put("/t/after", "2")  # the other two still have a quorum
        assert client.endpoint != used
        assert (await stored(client, "/t/before")).value == b"1"
        assert (await stored(client, "/t/after")).value == b"2"


async def test_a_stopped_member_does_not_hang_requests_or_watches(etcd3: EtcdCluster):
    async with etcd.Client(etcd3.endpoints) as client:
        start = await client.put("/t/w/0", "0")
        watch = client.watch("/t/w/", start_revision=start)
        assert (await anext(watch)).kv.key == "/t/w/0"
        stopped = etcd3.index_of(client.endpoint)
        etcd3.pause(stopped)  # SIGSTOP: connections are accepted, nothing answers
        try:
            await client.put("/t/w/1", "1")
            assert client.endpoint != etcd3.endpoints[stopped]
            event = await asyncio.wait_for(anext(watch), 30)
            assert (event.type, event.kv.key, event.kv.value) == ("put", "/t/w/1", b"1")
        finally:
            etcd3.resume(stopped)
            await watch.aclose()


async def test_compaction_during_a_watch_is_an_error_then_relist(etcd3: EtcdCluster):
    async with etcd.Client(etcd3.endpoints) as client:
        start = await client.put("/t/c/0", "0")
        watch = client.watch("/t/c/", start_revision=start)
        assert (await anext(watch)).revision == start
        # The member the watch is on stops; meanwhile more happens and is compacted away:
        # the watch resumes elsewhere from a revision etcd no longer has.
        stopped = etcd3.index_of(client.endpoint)
        etcd3.pause(stopped)
        try:
            # A read first moves the client off the stopped member: a put sent to it would be
            # retried elsewhere and then applied a second time once the member wakes up.
            await client.get("/t/c/0")
            last = 0
            for i in range(1, 4):
                last = await client.put(f"/t/c/{i}", str(i))
            await client.delete("/t/c/1")
            etcd3.compact(last + 1)
            with pytest.raises(etcd.Compacted) as caught:
                async with asyncio.timeout(30):
                    async for _ in watch:
                        pass
            assert caught.value.compact_revision == last + 1
        finally:
            etcd3.resume(stopped)
        # What a watcher does then: list at a pinned revision, watch from it + 1.
        revision, kvs = await client.range("/t/c/")
        assert [kv.key for kv in kvs] == ["/t/c/0", "/t/c/2", "/t/c/3"]
        watch = client.watch("/t/c/", start_revision=revision + 1)
        await client.put("/t/c/4", "4")
        assert (await asyncio.wait_for(anext(watch), 10)).kv.key == "/t/c/4"
        await watch.aclose()


async def test_a_member_killed_during_a_catch_up_loses_no_event(etcd3: EtcdCluster):
    async with etcd.Client(etcd3.endpoints) as client:
        start = await client.put("/t/x/start", "")
        padding = "p" * 300  # catch-up responses of many events each
        limit = asyncio.Semaphore(32)

        async def put(i: int) -> int:
            async with limit:
                return await client.put(f"/t/x/{i:05}", f"{i}:{padding}")

        written = await asyncio.gather(*(put(i) for i in range(5000)))
        expected = sorted(written)
        seen: list[int] = []
        async with asyncio.timeout(120):
            async for event in client.watch("/t/x/", start_revision=start + 1):
                seen.append(event.revision)
                if len(seen) == 1000:
                    etcd3.kill(etcd3.index_of(client.endpoint))
                if len(seen) >= len(expected):
                    break
        assert seen == expected  # all 5,000, in order, once each


async def test_a_lease_is_kept_across_failover(etcd3: EtcdCluster):
    async with etcd.Client(etcd3.endpoints) as client:
        async with client.keep(3) as lease:
            await client.put("/t/l/owned", "me", lease=lease.id)
            etcd3.kill(etcd3.index_of(client.endpoint))
            # Two TTLs: the lease outlives them only if keepalives found another member.
            await asyncio.sleep(6)
            assert not lease.lost.is_set()
            assert (await stored(client, "/t/l/owned")).lease == lease.id
        assert await client.get("/t/l/owned") is None  # revoked at the block's end


async def test_a_lease_revoked_elsewhere_is_lost(etcd1: EtcdCluster):
    async with etcd.Client(etcd1.endpoints) as client, client.keep(3) as lease:
        await client.revoke(lease.id)
        await asyncio.wait_for(lease.lost.wait(), 10)


async def test_tls_with_client_certificates(etcd_tls: EtcdCluster):
    certs = etcd_tls.certs
    assert certs is not None
    async with etcd.Client(etcd_tls.endpoints, ca=certs.ca, cert=certs.client_cert,
                           key=certs.client_key) as client:
        start = await client.put("/t/tls", "secure")
        assert (await stored(client, "/t/tls")).value == b"secure"
        watch = client.watch("/t/", start_revision=start)
        assert (await asyncio.wait_for(anext(watch), 10)).kv.key == "/t/tls"
        await watch.aclose()
        async with client.keep(5) as lease:
            assert lease.id
    # Without a client certificate etcd refuses the connection.
    async with etcd.Client(etcd_tls.endpoints, ca=certs.ca, timeout=1.0) as anonymous:
        with pytest.raises(etcd.Unavailable):
            await anonymous.get("/t/tls")
