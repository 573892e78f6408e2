"""The netlink-shaped source (datagrams of names on a socket) and the short periodic check."""

from __future__ import annotations

import asyncio
import socket

from reconciler.engine import clocks, sources, workqueue


async def test_names_in_datagrams_become_the_keys_of_their_owners_in_one_batch():
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.setblocking(False)
    queue = workqueue.WorkQueue()
    owners = {"br1": "shop", "veth1": "shop", "br2": "blog"}
    batches: list[set[str] | None] = []

    async def keys_for(names):
        batches.append(names)
        return {owners[n] for n in names if n in owners}

    task = asyncio.ensure_future(sources.watch_socket(
        reader, lambda data: set(data.decode().split()), keys_for, queue.add))
    try:
        writer.send(b"br1 veth1")
        writer.send(b"lo")
        assert await asyncio.wait_for(queue.get(), 5) == "shop"
        assert batches == [{"br1", "veth1", "lo"}]
        assert len(queue) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reader.close()
        writer.close()


async def test_the_check_queues_what_it_finds_each_interval():
    clock = clocks.FakeClock()
    queue = workqueue.WorkQueue(clock)
    found: list[str] = []

    async def check():
        return list(found)

    task = asyncio.ensure_future(sources.check_every(1.0, check, queue.add, clock=clock))
    try:
        await clock.advance(1)
        assert len(queue) == 0
        found.append("shop")
        await clock.advance(1)
        assert await asyncio.wait_for(queue.get(), 5) == "shop"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
