"""Read back the containers of a project from runc's state and their OCI annotations (no
registry in memory)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import watchfiles

from runtime import labels
from runtime.cgroups import drivers, model as cgroups_model
from runtime.oci import layout, lifecycle, runc, timefmt


@dataclass(frozen=True)
class Observed:
    id: str  # runc's; a container made before ids were given has its name as its id
    name: str
    project: str
    service: str
    replica: int
    config_hash: str
    image: str
    oneoff: bool
    status: str  # created | running | paused | exited
    pid: int  # 0 unless running or paused
    created: dt.datetime | None
    cgroups_path: str
    exit: lifecycle.ExitStatus | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The conmon that watches it while runc has its process (created, running, paused);
    # None then: its conmon is gone, its output goes nowhere and its exit is not recorded.
    monitor_pid: int | None = None

    @property
    def monitored(self) -> bool:
        return self.status == "exited" or self.monitor_pid is not None


def from_state(lay: layout.Layout, state: Mapping) -> Observed | None:
    """One runc state entry as observed state; None for containers pcompose did not make."""
    notes = state.get("annotations") or {}
    if labels.OWN_PROJECT not in notes:
        return None
    status = state.get("status", "")
    exited = status == "stopped"
    created = timefmt.parse(state["created"]) if state.get("created") else None
    monitor = None if exited else lifecycle.monitor_pid(lay, state["id"])
    # Its cgroup from the annotation: the bundle's config.json is not read for it at each look.
    ended = lifecycle.exit_status(lay, state["id"], cgroup=notes.get(labels.OWN_CGROUP)) \
        if exited or monitor is None else None
    if not exited and ended is not None:
        # runc's status is from before this look: a conmon gone since has reaped the process
        # and written its exit first (it leaves no exit file only when it is killed itself).
        # An exit from before runc made this instance is another's: this one lost its conmon.
        exited = created is not None and ended.finished_at >= created
        ended = ended if exited else None
    return Observed(
        id=state["id"],
        name=notes.get(labels.OWN_NAME) or state["id"],
        project=notes[labels.OWN_PROJECT],
        service=notes.get(labels.OWN_SERVICE, ""),
        replica=int(notes.get(labels.OWN_REPLICA, "1") or 1),
        config_hash=notes.get(labels.OWN_CONFIG_HASH, ""),
        image=notes.get(labels.OWN_IMAGE, ""),
        oneoff=notes.get(labels.ONEOFF) == labels.flag(True),
        status="exited" if exited else status,
        pid=0 if exited else int(state.get("pid") or 0),
        created=created,
        cgroups_path=notes.get(labels.OWN_CGROUP, ""),
        exit=ended,
        annotations=dict(notes),
        monitor_pid=None if exited else monitor,
    )


async def list_containers(lay: layout.Layout, project: str | None = None,
                          service: str | None = None) -> list[Observed]:
    """Every pcompose container under this runc root, optionally of one project / service."""
    states = await runc.list_all(lay.runc) if (lay.run_dir / "runc").exists() else []
    found = await asyncio.to_thread(lambda: [from_state(lay, s) for s in states])
    return sorted(
        (o for o in found if o and (project is None or o.project == project)
         and (service is None or o.service == service)),
        key=lambda o: (o.project, o.service, o.replica, o.name),
    )


def list_now(lay: layout.Layout, project: str | None = None) -> list[Observed]:
    """list_containers, blocking: for a thread of its own, so that a reader waits neither
    for the event loop nor for the default thread pool."""
    states = runc.list_all_now(lay.runc) if (lay.run_dir / "runc").exists() else []
    found = (from_state(lay, s) for s in states)
    return sorted((o for o in found if o and (project is None or o.project == project)),
                  key=lambda o: (o.project, o.service, o.replica, o.name))


async def get(lay: layout.Layout, cid: str) -> Observed | None:
    if not lifecycle.known(lay, cid):
        return None  # no runc call for a name runc has no state of
    state = await runc.state(lay.runc, cid)
    return None if state is None else await asyncio.to_thread(from_state, lay, state)


async def named(lay: layout.Layout, name: str) -> Observed | None:
    """The container called `name`, by the name files beside the ids (no runc call when
    there is none)."""
    for cid in await asyncio.to_thread(lifecycle.ids_named, lay, name):
        found = await get(lay, cid)
        if found is not None:
            return found
    return None


async def namespace_path(lay: layout.Layout, cid: str, kind: str) -> str:
    """/proc/<pid>/ns/<kind> of a running container, for `ipc: container:x` and the like."""
    state = await runc.state(lay.runc, cid)
    if state is None or state.get("status") not in ("running", "paused", "created"):
        raise LookupError(f"container {cid}: not running, cannot join its {kind} namespace")
    return f"/proc/{state['pid']}/ns/{kind}"


async def stats(lay: layout.Layout, cid: str, driver: drivers.Driver | None = None) -> cgroups_model.Stats:
    observed = await get(lay, cid)
    if observed is None or not observed.cgroups_path:
        raise LookupError(f"container {cid}: no such container")
    driver = driver or drivers.detect()
    return await asyncio.to_thread(driver.stats, observed.cgroups_path)


async def top(lay: layout.Layout, cid: str) -> list[int]:
    """PIDs (host's view) of every process in the container."""
    return await runc.ps(lay.runc, cid)


async def watch_exits(lay: layout.Layout, stop: asyncio.Event | None = None) -> AsyncIterator[str]:
    """Yield the id of each container whose exit code conmon writes (a key to look at again)."""
    lay.exit_dir.mkdir(parents=True, exist_ok=True)
    async for changes in watchfiles.awatch(lay.exit_dir, stop_event=stop, debounce=50, step=20,
                                           recursive=False):
        for change, path in sorted(changes, key=lambda c: c[1]):
            name = path.rsplit("/", 1)[-1]
            if (change != watchfiles.Change.deleted and not name.startswith(".")
                    and lay.exit_file(name).exists()):
                yield name
