"""conmon's k8s-file records: partial lines joined, tail and since, follow across rotation."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

from runtime.oci import logs
from tests.support import waiting

RECORDS = [
    "2026-01-02T03:04:05.000000001+00:00 stdout F one",
    "2026-01-02T03:04:06.5+00:00 stdout P tw",
    "2026-01-02T03:04:06.6+00:00 stderr F err line",
    "2026-01-02T03:04:07.123456789Z stdout F o",
    "2026-01-02T03:04:08+00:00 stdout F ",
]


def test_partials_join_per_stream():
    lines = logs.parse(RECORDS)
    assert [(ln.stream, ln.text) for ln in lines] == [("stdout", "one"), ("stderr", "err line"), ("stdout", "two"), ("stdout", "")]
    assert lines[2].time == dt.datetime(2026, 1, 2, 3, 4, 7, 123456, tzinfo=dt.timezone.utc)


def test_tail_and_since():
    lines = logs.parse(RECORDS)
    assert [ln.text for ln in logs.select(lines, tail=2)] == ["two", ""]
    assert logs.select(lines, tail=0) == []
    since = dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc)
    assert [ln.text for ln in logs.select(lines, since=since)] == ["err line", "two", ""]


def test_timestamps_prefix():
    line = logs.parse(RECORDS)[0]
    assert logs.format_line(line, timestamps=True) == "2026-01-02T03:04:05Z one"
    assert logs.format_line(line) == "one"


async def test_follow_continues_in_a_rotated_file(tmp_path):
    path = tmp_path / "ctr.log"
    path.write_text(RECORDS[0] + "\n")
    finished = False
    texts: list[str] = []

    async def writer() -> None:
        # Each write once the follower has read what came before it.
        nonlocal finished
        await waiting.until(lambda: len(texts) == 1, what="one")
        with open(path, "a") as f:
            f.write("2026-01-02T03:04:09+00:00 stdout F before-rotation\n")
        await waiting.until(lambda: len(texts) == 2, what="before-rotation")
        fresh = tmp_path / "ctr.log.tmp"  # as conmon does: a fresh file renamed over the log
        fresh.write_text("2026-01-02T03:04:10+00:00 stdout F after-rotation\n")
        os.rename(fresh, path)
        await waiting.until(lambda: len(texts) == 3, what="after-rotation")
        finished = True

    task = asyncio.create_task(writer())
    async for line in logs.follow(path, done=lambda: finished, poll=0.01):
        texts.append(line.text)
    await task
    assert texts == ["one", "before-rotation", "after-rotation"]
