"""runc command-line calls with a private --root, as asyncio subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

RUNC = "/usr/sbin/runc"


class RuncError(RuntimeError):
    def __init__(self, args: tuple[str, ...], code: int, stderr: str) -> None:
        super().__init__(f"runc {' '.join(args)}: exit {code}: {stderr.strip()}")
        self.stderr = stderr


class NotFound(RuncError):
    """The container does not exist (removal treats this as success)."""


@dataclass(frozen=True)
class Runc:
    root: str  # runc's state dir, private to one pcompose run dir
    binary: str = RUNC

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]


async def call(r: Runc, *args: str, input: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *r.argv(*args),
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(input)
    code = await proc.wait()  # at once: communicate saw it end
    if code != 0:
        text = err.decode(errors="replace")
        cls = NotFound if "does not exist" in text or "not exist" in text else RuncError
        raise cls(args, code, text)
    return out


async def state(r: Runc, cid: str) -> dict[str, Any] | None:
    """`runc state`: id, pid, status (created|running|paused|stopped), bundle, annotations; None if absent."""
    try:
        return json.loads(await call(r, "state", cid))
    except NotFound:
        return None


async def list_all(r: Runc, attempts: int = 5) -> list[dict[str, Any]]:
    """`runc list`. It fails when a container's state dir goes away while it reads (a delete
    running beside it): that race passes, so a failed list is tried again a few times."""
    for attempt in range(attempts):
        try:
            return json.loads(await call(r, "list", "--format", "json") or b"null") or []
        except RuncError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    return []


def list_all_now(r: Runc, attempts: int = 5) -> list[dict[str, Any]]:
    """list_all without the event loop, for a reader on a thread of its own (`ps` while a
    reconcile keeps the loop and the default thread pool busy)."""
    for attempt in range(attempts):
        done = subprocess.run(r.argv("list", "--format", "json"), stdin=subprocess.DEVNULL,
                              capture_output=True, check=False)
        if done.returncode == 0:
            return json.loads(done.stdout or b"null") or []
        if attempt == attempts - 1:
            raise RuncError(("list",), done.returncode, done.stderr.decode(errors="replace"))
        time.sleep(0.02 * (attempt + 1))
    return []


async def start(r: Runc, cid: str) -> None:
    await call(r, "start", cid)


async def kill(r: Runc, cid: str, sig: str, all_processes: bool = False) -> None:
    args = ["kill", "--all", cid, sig] if all_processes else ["kill", cid, sig]
    await call(r, *args)


async def pause(r: Runc, cid: str) -> None:
    await call(r, "pause", cid)


async def resume(r: Runc, cid: str) -> None:
    await call(r, "resume", cid)


async def delete(r: Runc, cid: str, force: bool = False) -> None:
    """Delete the container's runc state (and cgroup); "not found" is success."""
    with contextlib.suppress(NotFound):
        await call(r, "delete", *(["--force"] if force else []), cid)


async def update(r: Runc, cid: str, resources: dict[str, Any]) -> None:
    """Change cgroup limits of a live container; `resources` is OCI linux.resources."""
    await call(r, "update", "--resources", "-", cid, input=json.dumps(resources).encode())


async def ps(r: Runc, cid: str) -> list[int]:
    return json.loads(await call(r, "ps", "--format", "json", cid) or b"[]") or []
