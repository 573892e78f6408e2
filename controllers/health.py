"""Healthchecks: run each running container's check inside it on its schedule and keep the result on disk.

The state (`starting`, `healthy`, `unhealthy`, the failing streak and the last results) lives in
the container's `health.json`, so `ps`, the planner and a restarted agent all read the same.
A change of status wakes the project's reconcile (a `service_healthy` dependant may start).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


async def monitor(ctx: context.Context, notify: Callable[[str], None], tick: float = 0.25) -> None:
    """Run forever: probe every running container that has a check, when it is due."""
    due: dict[str, float] = {}
    running: dict[str, asyncio.Task] = {}
    while True:
        await asyncio.sleep(tick)
        for cid in [k for k, t in running.items() if t.done()]:
            running.pop(cid)
        # Only containers with a check cost a look at runc: most stacks have few or none.
        checked = {p.parent.name for p in (ctx.root / "containers").glob(f"*/{context.HEALTH}")}
        if not checked:
            due.clear()
            continue
        try:
            containers = [c for c in await observe.list_containers(ctx.layout)
                          if c.id in checked and c.status == "running"]
        except Exception as err:
            log.warning("health.observe_failed", error=str(err))
            continue
        now = time.time()
        for cid in set(due) - {c.id for c in containers}:
            due.pop(cid)  # stopped: its schedule starts afresh when it runs again
        for c in containers:
            if c.id in running:
                continue
            state = context.health_of(ctx, c.id)
            if not state.get("check"):
                continue
            began = lifecycle.started_at(ctx.layout, c.id)
            started = began.timestamp() if began else now
            if now >= due.setdefault(c.id, now + interval(state, now, started)):
                running[c.id] = asyncio.ensure_future(
                    _probe_and_notify(ctx, c.id, c.project, started, state.get("status"), notify))
                due[c.id] = now + interval(state, now, started)


async def _probe_and_notify(ctx, cid, project, started, before, notify) -> None:
    new = await probe(ctx, cid, started)
    if new is not None and new["status"] != before:
        log.info("container.health_changed", container=cid, status=new["status"],
                 previous=before)
        notify(project)
