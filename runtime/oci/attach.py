"""Attach a user's terminal or pipes to a container's process: conmon's attach socket, and the
relay `run` and `exec` share."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import stat
import struct
import termios
import tty
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

STDOUT, STDERR = 2, 3  # conmon's stream ids: the first byte of each message on the attach socket
CHUNK = 16384  # one message of input; conmon reads at most 32 KiB of a message and drops the rest
OUTPUT_GRACE = 1.0  # seconds output may trail the process's end (a child may still hold it)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
             signal.SIGUSR2)


class AttachError(RuntimeError):
    pass


class Stream(Protocol):
    """The container's side of an attachment."""

    async def receive(self) -> tuple[int, bytes] | None:
        """(STDOUT or STDERR, data), or None once the output has ended."""

    async def send(self, data: bytes) -> None: ...

    def end_input(self) -> None: ...

    def resize(self, rows: int, cols: int) -> None: ...


@dataclass
class Attachment:
    """A client of conmon's attach socket (`--full-attach`: `<bundle>/attach`, SOCK_SEQPACKET).

    conmon sends each piece of output as one message, a stream id byte then the data, to every
    client, and writes what a client sends to the process's input as it is. It lives apart from
    us: when we go away the container runs on, and `ps`, `logs` and `down` still reach it.
    """

    sock: socket.socket
    bundle: Path

    async def receive(self) -> tuple[int, bytes] | None:
        message = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        return (message[0], message[1:]) if message else None

    async def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for start in range(0, len(data), CHUNK):
            await loop.sock_sendall(self.sock, data[start:start + CHUNK])

    def end_input(self) -> None:
        """Without a terminal, conmon closes the process's input when our side shuts."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def resize(self, rows: int, cols: int) -> None:
        """conmon's control fifo: `1 ROWS COLS` sets the size of the terminal it holds."""
        try:
            fd = os.open(self.bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # conmon is gone (ENXIO: no reader): nothing left to resize
            return
        try:
            os.write(fd, f"1 {rows} {cols}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()


async def connect(bundle: Path) -> Attachment:
    """Connect to the attach socket conmon made for the container whose bundle this is.

    Connect before `runc start`: conmon sends output only to the clients it has at the time.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        # The path through /proc, as conmon binds it: a bundle path may not fit a socket address.
        dir_fd = os.open(bundle, os.O_PATH | os.O_CLOEXEC)
        try:
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/attach")
        finally:
            os.close(dir_fd)
    except OSError as err:
        sock.close()
        raise AttachError(f"{bundle.name}: cannot attach to its conmon: {err.strerror}") from None
    return Attachment(sock=sock, bundle=bundle)


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`; None if it is none."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextlib.contextmanager
def local_terminal(fd: int | None, stream: Stream) -> Iterator[None]:
    """While attached, the user's terminal on `fd` only carries bytes: raw, so that keys like
    Ctrl-C and Ctrl-D reach the container's terminal, which echoes and edits lines. Its size
    follows the user's window. Nothing happens when `fd` is None or not a terminal."""
    if fd is None or not os.isatty(fd):
        yield
        return
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(fd)

    def follow() -> None:
        size = window_size(fd)
        if size:
            stream.resize(*size)

    # TCSANOW, not setraw's default TCSAFLUSH: keys the user typed ahead are kept and passed on.
    tty.setraw(fd, termios.TCSANOW)
    follow()
    loop.add_signal_handler(signal.SIGWINCH, follow)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def signals_forwarded(send: Callable[[str], Coroutine[object, object, None]]) -> Iterator[None]:
    """While attached, the signals we get are the process's (docker's sig-proxy): Ctrl-C without
    a terminal interrupts the process rather than our wait for it. `send` takes a signal name."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    def forward(sig: signal.Signals) -> None:
        task = loop.create_task(send(sig.name))
        pending.add(task)
        task.add_done_callback(pending.discard)

    for sig in FORWARDED:
        loop.add_signal_handler(sig, forward, sig)
    try:
        yield
    finally:
        for sig in FORWARDED:
            loop.remove_signal_handler(sig)


_Code = TypeVar("_Code", int, int | None)


async def relay(stream: Stream, done: Awaitable[_Code], *, stdin: int | None = 0, stdout: int = 1,
                stderr: int = 2) -> _Code:
    """Carry input from `stdin` (None: none) to the process and its output back until it ends;
    return the exit code `done` gives. If our output goes away (BrokenPipeError: `run ... | head`),
    that error ends the relay while the process may still run."""
    waiting = asyncio.ensure_future(done)
    drain = asyncio.ensure_future(_drain(stream, stdout, stderr))
    feed = asyncio.ensure_future(_feed(stream, stdin)) if stdin is not None else None
    tasks = [t for t in (waiting, drain, feed) if t is not None]
    try:
        await asyncio.wait([waiting, drain], return_when=asyncio.FIRST_COMPLETED)
        if drain.done() and (failure := drain.exception()) is not None:
            raise failure
        code = await waiting
        await asyncio.wait([drain], timeout=OUTPUT_GRACE)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return code


async def _feed(stream: Stream, fd: int) -> None:
    async for chunk in _chunks(fd):
        await stream.send(chunk)
    stream.end_input()


async def _drain(stream: Stream, stdout: int, stderr: int) -> None:
    while (message := await stream.receive()) is not None:
        which, data = message
        _write_all(stderr if which == STDERR else stdout, data)


async def _chunks(fd: int):
    """What arrives on `fd` until its end, without blocking the loop while nothing does."""
    always_ready = stat.S_ISREG(os.fstat(fd).st_mode)  # epoll refuses regular files
    while True:
        if not always_ready:
            await readable(fd)
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            return
        yield chunk


async def readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
