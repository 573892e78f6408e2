"""Read a container's log in conmon's k8s-file format: tail, since, follow (across size rotation)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from runtime.oci import timefmt


@dataclass(frozen=True)
class LogLine:
    time: dt.datetime
    stream: str  # stdout | stderr
    text: str  # one whole line, without its newline


def format_line(line: LogLine, timestamps: bool = False) -> str:
    if timestamps:
        return f"{line.time.isoformat().replace('+00:00', 'Z')} {line.text}"
    return line.text


class _Assembler:
    """Joins conmon's partial records (tag P) into whole lines, per stream."""

    def __init__(self) -> None:
        self.pending: dict[str, list[str]] = {}
        self.last_time: dict[str, str] = {}

    def flush(self) -> list[LogLine]:
        """Partial lines left when a stream ended without a newline."""
        out = [LogLine(time=timefmt.parse(self.last_time[s]), stream=s, text="".join(parts))
               for s, parts in self.pending.items() if parts]
        self.pending.clear()
        return out

    def feed(self, raw: str) -> LogLine | None:
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            return None
        stamp, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else ""
        if tag.startswith("P"):
            self.pending.setdefault(stream, []).append(text)
            self.last_time[stream] = stamp
            return None
        whole = "".join(self.pending.pop(stream, [])) + text
        try:
            return LogLine(time=timefmt.parse(stamp), stream=stream, text=whole)
        except ValueError:
            return None


def parse(records: Iterable[str]) -> list[LogLine]:
    asm = _Assembler()
    return [line for raw in records if (line := asm.feed(raw)) is not None] + asm.flush()


def select(lines: list[LogLine], tail: int | None = None, since: dt.datetime | None = None) -> list[LogLine]:
    if since is not None:
        lines = [ln for ln in lines if ln.time >= since]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


def read(path: Path, tail: int | None = None, since: dt.datetime | None = None) -> list[LogLine]:
    """The whole log as lines (a missing log reads as empty)."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    return select(parse(text.splitlines()), tail, since)


async def follow(
    path: Path,
    done: Callable[[], bool],
    tail: int | None = None,
    since: dt.datetime | None = None,
    poll: float = 0.05,
) -> AsyncIterator[LogLine]:
    """Yield existing lines (after tail/since), then new ones until `done()` and the end is reached.

    conmon rotates at --log-size-max by renaming a fresh file over the log: on a new inode,
    finish the old file and go on from the start of the new one.
    """
    path = Path(path)
    while not path.exists():
        if done():
            return
        await asyncio.sleep(poll)
    handle = open(path, "rb")
    try:
        asm, buf = _Assembler(), b""
        first = handle.read()
        records = first.split(b"\n")
        buf = records.pop()
        initial = [ln for r in records if (ln := asm.feed(r.decode(errors="replace"))) is not None]
        for earlier in select(initial, tail, since):
            yield earlier
        while True:
            finished = done()  # checked before reading: what was written before the exit is read
            chunk = handle.read()
            if chunk:
                buf += chunk
                *records, buf = buf.split(b"\n")
                for raw in records:
                    line = asm.feed(raw.decode(errors="replace"))
                    if line is not None and (since is None or line.time >= since):
                        yield line
                continue
            if _rotated(path, handle):
                handle.close()
                handle, buf = open(path, "rb"), b""
                continue
            if finished:
                for line in asm.flush():
                    yield line
                return
            await asyncio.sleep(poll)
    finally:
        handle.close()


def _rotated(path: Path, handle) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False
