"""Launch conmon for one container and complete its start/sync pipe handshake."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from runtime import statefiles

CONMON = "/usr/bin/conmon"


class ConmonError(RuntimeError):
    pass


@dataclass(frozen=True)
class Launch:
    cid: str
    bundle: Path  # holds config.json; conmon makes its ctl/winsz FIFOs here
    workdir: Path  # conmon's cwd: it writes the `oom` file here
    exit_dir: Path
    persist_dir: Path
    log_path: Path
    runc_root: str
    socket_dir: Path
    log_size_max: int = 10 * 1024 * 1024
    runtime: str = "/usr/sbin/runc"
    binary: str = CONMON
    terminal: bool = False  # compose `tty: true`: conmon holds the pty and logs what it shows
    stdin: bool = False  # what clients of the attach socket write goes to the process's input
    name: str = ""  # the container's name, for conmon's messages (default: its id)

    def argv(self) -> list[str]:
        return [
            self.binary, "--api-version", "1", "-c", self.cid, "-u", self.cid,
            "-r", self.runtime, "-b", str(self.bundle), "-n", self.name or self.cid,
            "-p", str(self.workdir / "pidfile"),
            "--exit-dir", str(self.exit_dir), "--persist-dir", str(self.persist_dir),
            "--full-attach", "--socket-dir-path", str(self.socket_dir),
            "-l", f"k8s-file:{self.log_path}", "--log-size-max", str(self.log_size_max),
            "--log-level", "error",
            "--runtime-arg", "--log-format=json",
            "--runtime-arg", "--log", f"--runtime-arg={self.workdir / 'oci-log'}",
            "--runtime-arg", "--root", f"--runtime-arg={self.runc_root}",
            "--conmon-pidfile", str(self.workdir / "conmon.pid"),
        ] + (["-t"] if self.terminal else []) + self._stdin_args()

    def _stdin_args(self) -> list[str]:
        if not self.stdin:
            return []
        # Without a terminal, conmon closes the input pipe when the attached client goes away:
        # that is how `echo hi | run -T svc cat` ends. On a terminal, EOF is the user's Ctrl-D,
        # and a client that dies must not take the shell's input away from the next one.
        return ["-i", "--leave-stdin-open"] if self.terminal else ["-i"]


async def launch(spec: Launch, timeout: float = 30.0) -> int:
    """Start conmon (which runs `runc create`) and return the container's PID.

    conmon double-forks into its own session, so it and the container outlive us.
    """
    sync_ours, sync_theirs = socket.socketpair()
    start_ours, start_theirs = socket.socketpair()
    env = dict(os.environ, _OCI_SYNCPIPE=str(sync_theirs.fileno()), _OCI_STARTPIPE=str(start_theirs.fileno()))
    try:
        with open(statefiles.open_private(spec.workdir / "conmon.err"), "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv(), cwd=spec.workdir, env=env, start_new_session=True,
                # conmon also keeps our end of its sync socket: if the agent dies before it
                # reads the PID, conmon's write still succeeds (no SIGPIPE that would kill it
                # and leave the container created with no monitor).
                pass_fds=(sync_theirs.fileno(), start_theirs.fileno(), sync_ours.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )
        sync_theirs.close()
        start_theirs.close()
        loop = asyncio.get_running_loop()
        start_ours.setblocking(False)
        sync_ours.setblocking(False)
        await loop.sock_sendall(start_ours, b"0")
        message = await asyncio.wait_for(_read_message(loop, sync_ours), timeout)
        await proc.wait()
    finally:
        for s in (sync_ours, sync_theirs, start_ours, start_theirs):
            s.close()
    pid = message.get("data", -1) if message else -1
    if pid <= 0:
        raise ConmonError(f"{spec.cid}: container create failed: {_reason(spec, message)}")
    return pid


async def _read_message(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> dict | None:
    buf = b""
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        buf += chunk
        try:
            return json.loads(buf.split(b"\n")[0])
        except ValueError:
            continue
    return json.loads(buf) if buf.strip() else None


def _reason(spec: Launch, message: dict | None) -> str:
    if message and message.get("message"):
        return str(message["message"]).strip()
    for name in ("oci-log", "conmon.err"):
        path = spec.workdir / name
        if path.exists() and path.read_text().strip():
            return path.read_text().strip().splitlines()[-1]
    return "conmon exited without a PID"
