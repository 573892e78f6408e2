"""Logs in conmon's k8s-file format (follow, tail, since, size limit) and exec, plain and with a terminal."""

from __future__ import annotations

import asyncio
import dataclasses
import os

from runtime.oci import exec as oci_exec, lifecycle, logs
from tests.linux.oci import helpers
from tests.support import waiting


async def test_follow_tail_since_and_timestamps(lay, make):
    script = "for i in 1 2 3; do echo line-$i; done; echo warn >&2; sleep 0.4; echo late; printf no-newline"
    config = make(command=("sh", "-c", script))
    await lifecycle.run(lay, config)
    followed = [line async for line in logs.follow(lay.log_path(config.name), done=lambda: lifecycle.exit_status(lay, config.name) is not None)]
    assert [(ln.stream, ln.text) for ln in followed] == [
        ("stdout", "line-1"), ("stdout", "line-2"), ("stdout", "line-3"), ("stderr", "warn"),
        ("stdout", "late"), ("stdout", "no-newline"),
    ]
    everything = logs.read(lay.log_path(config.name))
    assert [ln.text for ln in logs.read(lay.log_path(config.name), tail=2)] == ["late", "no-newline"]
    since = everything[4].time
    assert [ln.text for ln in logs.read(lay.log_path(config.name), since=since)] == ["late", "no-newline"]
    stamped = logs.format_line(everything[0], timestamps=True)
    assert stamped.endswith("Z line-1") and stamped.startswith(str(since.year))


async def test_follow_from_the_tail_of_a_running_container(lay, make):
    # c comes only once the test says so, after the follow has read the tail.
    script = "echo a; echo b; while [ ! -f /tmp/go ]; do sleep 0.05; done; echo c"
    config = make(command=("sh", "-c", script))
    await lifecycle.run(lay, config)
    await waiting.until(lambda: helpers.output(lay, config.name) == "a\nb", what="a and b")
    lines = logs.follow(lay.log_path(config.name), tail=1,
                        done=lambda: lifecycle.exit_status(lay, config.name) is not None)
    texts = [(await lines.__anext__()).text]
    await oci_exec.run(lay, config.name, ["touch", "/tmp/go"])
    texts += [ln.text async for ln in lines]
    assert texts == ["b", "c"]


async def test_log_size_is_limited(lay, make):
    small = dataclasses.replace(lay, log_size_max=64 * 1024)
    config = make(command=("sh", "-c", "i=0; while [ $i -lt 5000 ]; do echo line-$i-padding-padding; i=$((i+1)); done"))
    status = await helpers.run_to_exit(small, config)
    assert status.code == 0
    size = lay.log_path(config.name).stat().st_size
    assert 0 < size <= 64 * 1024
    assert logs.read(lay.log_path(config.name))[-1].text == "line-4999-padding-padding"


async def test_exec_output_exit_code_user_env_and_workdir(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    result = await oci_exec.run(lay, config.name, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    opts = oci_exec.ExecOptions(user="app", env={"GREETING": "hi"}, workdir="/home/app")
    result = await oci_exec.run(lay, config.name, ["sh", "-c", "id -u; echo $GREETING; pwd"], opts)
    assert result.stdout.decode().split() == ["1000", "hi", "/home/app"]
    result = await oci_exec.run(lay, config.name, ["cat"], stdin=b"piped")
    assert result.stdout == b"piped"


async def test_exec_with_a_terminal(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    term = await oci_exec.open_terminal(lay, config.name, ["sh"], rows=33, cols=101)
    try:
        loop = asyncio.get_running_loop()
        seen = b""
        while b"#" not in seen:  # type as a user does: once the shell's prompt is there
            seen += await asyncio.wait_for(loop.run_in_executor(None, os.read, term.master_fd, 4096), 10)
        os.write(term.master_fd, b"tty; stty size; [ -t 0 ] && echo is-a-tty; exit 5\n")
        while True:
            try:
                chunk = await asyncio.wait_for(loop.run_in_executor(None, os.read, term.master_fd, 4096), 10)
            except OSError:  # EIO: the command and runc are gone
                break
            if not chunk:
                break
            seen += chunk
        code = await asyncio.wait_for(term.wait(), 10)
    finally:
        term.close()
    text = seen.decode(errors="replace")
    assert "/dev/pts/" in text
    assert "33 101" in text
    assert code == 5


async def test_tty_gives_the_main_process_a_terminal(lay, make):
    config = make(command=("sh", "-c", "[ -t 1 ] && echo has-a-tty; tty"), tty=True)
    status = await helpers.run_to_exit(lay, config)
    out = helpers.output(lay, config.name)
    assert status.code == 0
    assert "has-a-tty" in out and "/dev/pts/0" in out


async def test_attach_relays_a_local_terminal(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    term = await oci_exec.open_terminal(lay, config.name, ["sh"])
    user_in, to_term = os.pipe()
    from_term, user_out = os.pipe()
    os.write(to_term, b"echo relayed-$((40+2)); exit 3\n")
    try:
        code = await asyncio.wait_for(oci_exec.attach(term, stdin_fd=user_in, stdout_fd=user_out), 15)
        os.close(user_out)
        shown = b""
        while chunk := os.read(from_term, 4096):
            shown += chunk
    finally:
        for fd in (user_in, to_term, from_term):
            os.close(fd)
    assert code == 3
    assert b"relayed-42" in shown
