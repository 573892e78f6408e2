"""Attaching to a container's conmon: input passed on and ended, output by stream, the exit
code, and a terminal that outlives a client that goes away."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from runtime.oci import attach, lifecycle


async def exit_code(lay, cid: str) -> int:
    return (await lifecycle.wait(lay, cid, timeout=20)).code


def read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


async def test_piped_input_reaches_the_process_and_its_end_ends_it(lay, make):
    config = make(command=("sh", "-c", "tr a-z A-Z; echo to-stderr >&2; exit 3"), stdin_open=True)
    await lifecycle.create(lay, config)
    session = await attach.connect(lay.bundle(config.name))
    user_in, typed = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(typed, b"piped in\n")
    os.close(typed)  # the end of input: conmon closes the process's stdin when we shut ours
    try:
        await lifecycle.start(lay, config.name)
        code = await asyncio.wait_for(attach.relay(session, exit_code(lay, config.name),
                                                   stdin=user_in, stdout=out_w, stderr=err_w), 30)
    finally:
        session.close()
        for fd in (user_in, out_w, err_w):
            os.close(fd)
    assert code == 3
    assert read_all(out_r) == b"PIPED IN\n"
    assert read_all(err_r) == b"to-stderr\n"
    os.close(out_r)
    os.close(err_r)


async def test_a_terminal_outlives_a_client_that_goes_away(lay, make):
    config = make(command=("sh",), tty=True, stdin_open=True)
    await lifecycle.create(lay, config)
    first = await attach.connect(lay.bundle(config.name))
    await lifecycle.start(lay, config.name)
    await first.send(b"echo first-$((1+1))\n")
    shown = b""
    while b"first-2" not in shown:
        stream, data = await asyncio.wait_for(first.receive(), 10)
        assert stream == attach.STDOUT  # a terminal has one stream
        shown += data
    first.close()
    second = await attach.connect(lay.bundle(config.name))
    out_r, out_w = os.pipe()
    second.resize(33, 101)
    await second.send(b"stty size; exit 4\n")
    try:
        code = await asyncio.wait_for(attach.relay(second, exit_code(lay, config.name),
                                                   stdin=None, stdout=out_w), 30)
    finally:
        second.close()
        os.close(out_w)
    assert code == 4
    assert b"33 101" in read_all(out_r)
    os.close(out_r)


async def test_attaching_to_no_container_says_which(lay):
    with pytest.raises(attach.AttachError, match="^nosuch: cannot attach"):
        await attach.connect(Path(lay.root) / "containers" / "nosuch")


async def test_output_that_nobody_reads_any_more_ends_the_relay(lay, make):
    config = make(command=("yes",))
    await lifecycle.create(lay, config)
    session = await attach.connect(lay.bundle(config.name))
    out_r, out_w = os.pipe()
    os.close(out_r)  # `run ... | head`: the reader is gone
    try:
        await lifecycle.start(lay, config.name)
        with pytest.raises(BrokenPipeError):
            await asyncio.wait_for(attach.relay(session, exit_code(lay, config.name), stdin=None,
                                                stdout=out_w), 30)
    finally:
        session.close()
        os.close(out_w)
