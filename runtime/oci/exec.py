"""Run a command in a running container: captured output and exit code, or an interactive terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import termios
import tty
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.oci import attach as oci_attach, layout, users


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class ExecOptions:
    user: str = ""  # name or uid[:group], resolved in the container's /etc/passwd
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = ""


def runc_args(lay: layout.Layout, cid: str, argv: list[str], opts: ExecOptions, terminal: bool) -> list[str]:
    args = lay.runc.argv("exec")
    if terminal:
        args.append("--tty")
    if opts.user:
        rootfs = json.loads((lay.bundle(cid) / "config.json").read_text())["root"]["path"]
        user = users.resolve_in_rootfs(opts.user, rootfs)
        args += ["--user", f"{user.uid}:{user.gid}"]
        args += [f"--additional-gids={g}" for g in user.additional_gids]
    if opts.workdir:
        args += ["--cwd", opts.workdir]
    for key, value in opts.env.items():
        args += ["--env", f"{key}={value}"]
    return args + [cid, *argv]


async def detach(lay: layout.Layout, cid: str, argv: list[str], opts: ExecOptions = ExecOptions()) -> None:
    """`exec -d`: start the command and return; it runs on without us (output discarded)."""
    args = runc_args(lay, cid, argv, opts, terminal=False)
    args.insert(args.index("exec") + 1, "--detach")
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await proc.wait():
        raise RuntimeError(f"exec -d in {cid}: runc exited {proc.returncode}")


async def run(lay: layout.Layout, cid: str, argv: list[str], opts: ExecOptions = ExecOptions(),
              stdin: bytes | None = None) -> ExecResult:
    """Non-interactive exec: the command's stdout, stderr and exit code (runc passes it through)."""
    proc = await asyncio.create_subprocess_exec(
        *runc_args(lay, cid, argv, opts, terminal=False),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    return ExecResult(exit_code=await proc.wait(), stdout=out, stderr=err)  # at once: it ended


@dataclass
class Terminal:
    """An interactive exec, an attach.Stream: the master side of the pty; `wait()` gives the exit code.

    runc runs in the foreground on a pty we own: it relays that pty to the container's own
    terminal and forwards window size changes (SIGWINCH).
    """

    master_fd: int
    process: asyncio.subprocess.Process

    async def receive(self) -> tuple[int, bytes] | None:
        await oci_attach.readable(self.master_fd)
        try:
            data = os.read(self.master_fd, 65536)
        except OSError:  # EIO: every writer of the pty is gone
            return None
        return (oci_attach.STDOUT, data) if data else None

    async def send(self, data: bytes) -> None:
        os.write(self.master_fd, data)

    def end_input(self) -> None:
        """A terminal's input has no end of its own: Ctrl-D is a key like any other."""

    def resize(self, rows: int, cols: int) -> None:
        _set_size(self.master_fd, rows, cols)
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        return await self.process.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.master_fd)


async def open_terminal(lay: layout.Layout, cid: str, argv: list[str], opts: ExecOptions = ExecOptions(),
                        rows: int = 24, cols: int = 80) -> Terminal:
    master, slave = os.openpty()
    _set_size(master, rows, cols)
    # The container's own terminal echoes and edits lines; ours only carries bytes. Raw from
    # the start, so nothing typed before runc takes the pty over is echoed twice.
    tty.setraw(slave)
    try:
        proc = await asyncio.create_subprocess_exec(
            *runc_args(lay, cid, argv, opts, terminal=True),
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )
    finally:
        os.close(slave)
    return Terminal(master_fd=master, process=proc)


async def attach(terminal: Terminal, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Relay a local terminal to an exec terminal until the command ends; return its exit code."""
    try:
        with oci_attach.local_terminal(stdin_fd, terminal):
            return await oci_attach.relay(terminal, terminal.wait(), stdin=stdin_fd, stdout=stdout_fd)
    finally:
        terminal.close()


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
