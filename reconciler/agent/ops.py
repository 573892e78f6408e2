"""What the agent does to containers on a user's direct request, outside any plan: list them
for a verb's output, stop them with the verb's timeout, remove one-off ones before `down`,
and the verbs stop, start, restart, kill, pause, unpause and rm."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from controllers import context, services, system
from reconciler.engine import keylocks
from reconciler.plan import model
from runtime.oci import lifecycle, observe

# verb -> the states it acts on, and the words of its two progress lines (docker compose's).
VERBS = {
    "stop": (("running", "paused", "created"), "Stopping", "Stopped"),
    "start": (("exited", "created"), "Starting", "Started"),
    "restart": (("running", "paused", "exited", "created"), "Restarting", "Started"),
    "kill": (("running", "paused"), "Killing", "Killed"),
    "pause": (("running",), "Pausing", "Paused"),
    "unpause": (("paused",), "Unpausing", "Unpaused"),
    # docker compose rm takes what does not run; the agent stops wanting it first (converge).
    "rm": (("exited", "created"), "Removing", "Removed"),
}


@dataclass(frozen=True)
class Brief:
    """What `up` and `down` print of a container; cheaper to read than a ps view."""

    name: str
    id: str
    service: str
    state: str
    exit_code: int | None
    health: str
    oneoff: bool
    replica: int = 0

    @property
    def resource(self) -> str:
        """Its replica as the plan names it (`service:web:2`)."""
        return f"service:{self.service}:{self.replica}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def view_json(view: services.ContainerView) -> dict:
    """A ps view as JSON: times as ISO 8601 text (the CLI's render.ps_* read them back)."""
    out = dataclasses.asdict(view)
    for key in ("created", "started", "finished"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    return out


# `ps` reads here, not on the default pool: during a large `up` that pool holds a backlog of
# the steps' file and netlink work, and a hop per container behind it made `ps` wait minutes.
_READER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ps")


class Ops:
    def __init__(self, ctx: context.Context,
                 recent: Callable[[str], model.ObservedState | None] = lambda project: None,
                 locks: keylocks.KeyLocks | None = None) -> None:
        self.ctx = ctx
        self.recent = recent  # the loop's last look at a project, if nothing changed since
        # The reconcile loop's, when one runs: a verb and a pass never act on a project at once.
        self.locks = locks if locks is not None else keylocks.KeyLocks()

    @contextlib.asynccontextmanager
    async def serial(self, project: str) -> AsyncIterator[None]:
        """Hold `project` from the verb's look at its containers to its last act on them: no
        pass of the loop plans from a look taken before the verb changed them."""
        async with self.locks.hold(project):
            yield

    async def converged(self, project: str) -> list[Brief]:
        """The service containers, right after the loop converged the project: what its last
        look saw when no step ran since (an `up` that changed nothing asks runc once, not
        twice), else containers()."""
        seen = self.recent(project)
        if seen is None:
            return [b for b in await self.containers(project) if not b.oneoff]
        return sorted((Brief(c.name, c.id or c.name, c.service, c.state.value, c.exit_code,
                             c.health or "", False, c.replica) for c in seen.containers),
                      key=lambda b: b.name)

    async def containers(self, project: str) -> list[Brief]:
        """The project's containers, one-off ones too, by name, as runc has them now."""
        found = await services.observed_raw(self.ctx, project)
        return sorted((Brief(o.name, o.id, o.service, o.status, o.exit.code if o.exit else None,
                             self._health(o), o.oneoff, o.replica) for o in found),
                      key=lambda b: b.name)

    async def states(self) -> dict[str, list[str]]:
        """Every project's containers' states (created, running, paused, exited), for `ls`."""
        out: dict[str, list[str]] = {}
        for o in await observe.list_containers(self.ctx.layout):
            out.setdefault(o.project, []).append(o.status)
        return out

    async def act(self, verb: str, cid: str, state: str, *, timeout: float | None = None,
                  signal: str = "SIGKILL", volumes: bool = False) -> None:
        """One of VERBS on one container, as a user asks for it: a stopped or killed
        container stays so (its restart policy leaves it) until `start` or `up`; a removed
        one (`rm`, with its anonymous volumes when `volumes`) is gone until `up`."""
        ctx = self.ctx
        if verb == "stop":
            if state == "created":  # nothing runs yet (`create`): it stays created
                context.mark_stopped_by_user(ctx, cid, True)
            else:
                await services.stop_container(ctx, cid, timeout)
        elif verb == "start":
            await services.start_container(ctx, cid)
        elif verb == "restart":
            if state in ("running", "paused"):
                await services.stop_container(ctx, cid, timeout)
            await services.start_container(ctx, cid)
        elif verb == "kill":
            context.mark_stopped_by_user(ctx, cid, True)
            await lifecycle.kill(ctx.layout, cid, signal)
        elif verb == "pause":
            await lifecycle.pause(ctx.layout, cid)
        elif verb == "unpause":
            await lifecycle.unpause(ctx.layout, cid)
        elif verb == "rm":
            await services.remove_container(ctx, cid, remove_anonymous=volumes)
        else:
            raise ValueError(f"unknown verb {verb}")

    def _health(self, o) -> str:
        if o.status != "running":
            return ""
        return context.health_of(self.ctx, o.id).get("status", "")

    async def views(self, project: str) -> list[services.ContainerView]:
        """What `ps` shows of the project's containers: read from runc's state and the
        agent's records without the project's lock (a pass may hold it for minutes) and off
        the event loop's queues, so it answers while a reconcile runs."""
        return await asyncio.get_running_loop().run_in_executor(
            _READER, services.list_now, self.ctx, project)

    async def prune(self, ids: set[str],
                    removing: Callable[[services.ContainerView], None]) -> list[tuple[str, int]]:
        """`system prune`: those of `ids` that do not run (looked at again just before each
        goes), `removing` told of each first; (ID, bytes freed) of each removed."""
        return await system.prune_containers(self.ctx, lambda view: view.id not in ids,
                                             removing)

    async def stop(self, ids: list[str], timeout: float | None) -> None:
        await asyncio.gather(*(services.stop_container(self.ctx, cid, timeout) for cid in ids))

    async def remove(self, ids: list[str]) -> None:
        """One after another: each removal may be the last of its project (cgroups)."""
        for cid in ids:
            await services.remove_container(self.ctx, cid, remove_anonymous=True)
