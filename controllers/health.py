"""Healthchecks: run each running container's check inside it on its schedule and keep the result on disk.

The state (`starting`, `healthy`, `unhealthy`, the failing streak and the last results) lives in
the container's `health.json`, so `ps`, the planner and a restarted agent all read the same.
A change of status wakes the project's reconcile (a `service_healthy` dependant may start).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controllers import context
from runtime.oci import exec as oci_exec, lifecycle, observe

log = structlog.get_logger(__name__)

LOG_KEEP = 5
OUTPUT_KEEP = 4096


def next_status(state: dict, ok: bool, now: float, started: float) -> dict:
    """Docker's rules: a pass makes it healthy; `retries` failures in a row make it unhealthy,
    but failures inside `start_period` do not count."""
    check = state["check"]
    streak = 0 if ok else state.get("failing_streak", 0) + 1
    in_start = now - started < check["start_period"]
    status = state.get("status", "starting")
    if ok:
        status = "healthy"
    elif in_start and status == "starting":
        streak = 0
    elif streak >= check["retries"]:
        status = "unhealthy"
    return {**state, "status": status, "failing_streak": streak}


def interval(state: dict, now: float, started: float) -> float:
    check = state["check"]
    if state.get("status") == "starting" and now - started < check["start_period"]:
        return check["start_interval"]
    return check["interval"]


async def probe(ctx: context.Context, cid: str, started: float) -> dict | None:
    """Run the check once and store the outcome; returns the new state (None: no check)."""
    state = context.health_of(ctx, cid)
    if not state.get("check"):
        return None
    check = state["check"]
    begun = time.time()
    try:
        result = await asyncio.wait_for(
            oci_exec.run(ctx.layout, cid, list(check["argv"])), timeout=check["timeout"])
        ok, code = result.exit_code == 0, result.exit_code
        output = (result.stdout + result.stderr)[-OUTPUT_KEEP:].decode(errors="replace")
    except TimeoutError:
        ok, code, output = False, -1, f"health check timed out after {check['timeout']}s"
    except Exception as err:  # the container went away between the list and the exec
        ok, code, output = False, -1, str(err)
    # Re-read: a restart may have reset the state while the check ran.
    if context.health_of(ctx, cid).get("status") != state.get("status"):
        return None
    now = time.time()
    new = next_status(state, ok, now, started)
    entry = {"start": begun, "end": now, "exit_code": code, "output": output}
    new["log"] = (state.get("log", []) + [entry])[-LOG_KEEP:]
    context.write_json(ctx.container_dir(cid) / context.HEALTH, new)
    return new


@dataclass(frozen=True)
class _Schedule:
    due: float
    started: dt.datetime | None  # the start it was scheduled for: another start starts afresh


async def monitor(ctx: context.Context, notify: Callable[[str], None], tick: float = 0.25) -> None:
    """Run forever: probe every running container that has a check, when it is due. Each
    tick costs a read of the start time per container with a check; its check is read, and
    runc asked about it, only when its probe is due or it (re)started, so containers without
    a check cost nothing."""
    tracked = context.health_tracked(ctx)
    tracked.update(p.parent.name for p in (ctx.root / "containers").glob(f"*/{context.HEALTH}"))
    scheduled: dict[str, _Schedule] = {}
    looked: dict[str, dt.datetime | None] = {}  # not running when last looked at, at this start
    running: dict[str, asyncio.Task] = {}
    while True:
        now = time.time()
        nearest = min((s.due for s in scheduled.values()), default=now + tick)
        await asyncio.sleep(min(tick, max(0.0, nearest - now)))
        for cid in [k for k, t in running.items() if t.done()]:
            running.pop(cid)
        for cid in list(tracked):
            if cid in running:
                continue
            began = lifecycle.started_at(ctx.layout, cid)
            mine = scheduled.get(cid)
            now = time.time()
            if mine is not None and mine.started == began and now < mine.due:
                continue  # not due at this start: its check need not be read yet
            state = context.health_of(ctx, cid)
            if not state.get("check"):  # removed, or made again without a check
                tracked.discard(cid)
                scheduled.pop(cid, None)
                looked.pop(cid, None)
                continue
            if mine is not None and mine.started != began:
                mine = None  # started again since: its schedule starts afresh
            elif mine is None and began is None:
                continue  # created, never started
            elif mine is None and cid in looked and looked[cid] == began \
                    and lifecycle.has_exited(ctx.layout, cid):
                continue  # stopped at this start: nothing to look at until it starts again
            try:
                seen = await observe.get(ctx.layout, cid)
            except Exception as err:
                log.warning("health.observe_failed", container=cid, error=str(err))
                continue
            if seen is None or seen.status != "running":
                scheduled.pop(cid, None)  # its schedule starts afresh when it runs again
                looked[cid] = began
                continue
            looked.pop(cid, None)
            now = time.time()
            started = began.timestamp() if began else now
            if mine is None:  # first seen running: due one interval from now, as docker does
                scheduled[cid] = _Schedule(now + interval(state, now, started), began)
                continue
            running[cid] = asyncio.ensure_future(
                _probe_and_notify(ctx, cid, seen.project, started, state.get("status"), notify))
            scheduled[cid] = _Schedule(now + interval(state, now, started), began)


async def _probe_and_notify(ctx, cid, project, started, before, notify) -> None:
    new = await probe(ctx, cid, started)
    if new is not None and new["status"] != before:
        log.info("container.health_changed", container=cid, status=new["status"],
                 previous=before)
        notify(project)
