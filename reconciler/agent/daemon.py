"""The agent process: store, API on the socket, and (once a runtime is plugged in) the
reconcile loop fed by submissions, container exits and a periodic resync."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from reconciler.agent import (
    api,
    cluster_assign,
    cluster_depends,
    cluster_networks,
    container_events,
    events,
    launcher,
    metrics,
    nodes,
    peers,
    server,
    store,
)
from reconciler.cluster import membership, overlay, scheduler
from reconciler.engine import controller, errors, executor, keylocks, loop, sources
from reconciler.plan import model, plans
from runtime import statefiles

if TYPE_CHECKING:  # imported with the routes it serves, once the agent runs
    from reconciler.agent import converge

log = structlog.get_logger(__name__)


class AlreadyRunning(Exception):
    """Another agent holds this run dir."""


class TaskFailed(Exception):
    """A task that must run for the agent's life ended: the agent stopped, and says which.
    An agent that lives on without its resync or exit watch would look alive and do nothing."""


# The exit code of an agent that found another one on its run dir: a launcher that raced
# another caller waits for the winner instead of reporting a failure.
EXIT_ALREADY_RUNNING = launcher.EXIT_ALREADY_RUNNING


class Translator(Protocol):
    def desired(self, record: store.ProjectRecord) -> model.DesiredState:
        """The stored normalized stack as plan values (the spec's config hash included)."""


@dataclass(frozen=True)
class Runtime:
    """What the agent needs from the layers below to reconcile. The agent runs without one
    (it then keeps desired state and serves the API, and says so in /v1/version)."""

    translator: Translator
    observer: loop.Observer
    actuator: loop.Actuator
    exit_dirs: tuple[Path, ...] = ()  # conmon's exit dirs: a new file is a container exit
    project_of_exit: Callable[[Path], str | None] = field(default=lambda path: None)
    name_of_exit: Callable[[Path], str | None] = field(default=lambda path: None)
    # What runs beside the loop for the agent's life (DNS, health checks); it is given the
    # queue's `add`, to wake a project's reconcile when something it watches changes.
    background: Callable[[Callable[[str], None]], Awaitable[None]] | None = None
    # The containers as verbs see them, and what `down` does outside the plan (ops.Ops).
    ops: converge.ContainerOps | None = None
    # One actor per project: the loop's passes and the verbs (ops) hold the same locks.
    locks: keylocks.KeyLocks = field(default_factory=keylocks.KeyLocks)


class StoreSource:
    """loop.DesiredSource over the SQLite store; a project being removed wants nothing."""

    def __init__(self, st: store.Store, translator: Translator) -> None:
        self.store, self.translator = st, translator

    async def desired(self, project: str) -> loop.Desired | None:
        record = self.store.get(project)
        if record is None:
            return None
        if record.status == store.REMOVING:
            state = model.DesiredState(project)
        else:
            try:
                state = self.translator.desired(record)
            except ValueError as error:
                raise errors.PermanentError(f"stored stack of {project}: {error}") from error
        return loop.Desired(state, record.options, record.generation)

    async def applied(self, project: str, generation: int) -> None:
        record = self.store.get(project)
        if record and record.status == store.REMOVING and record.generation == generation:
            self.store.delete(project)
        else:
            self.store.set_applied(project, generation)

    async def applied_generation(self, project: str) -> int:
        record = self.store.get(project)
        return record.applied_generation if record else 0


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """One agent per run dir: a second one fails fast instead of stealing the socket."""
    fd = os.open(run_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another agent is running on {run_dir}") from None
        yield
    finally:
        os.close(fd)


def _reconcile_with_status(agent: server.Agent, reconcile: loop.ProjectReconciler):
    async def run(project: str) -> float | None:
        try:
            result = await reconcile(project)
        except Exception as error:
            outcome = errors.classify(error)
            agent.store.set_status(project, "failed" if outcome.final else "retrying",
                                   outcome.reason)
            agent.bus.publish(events.Event("reconcile", project, "failed",
                                           message=outcome.reason))
            agent.metrics.inc("pcompose_reconciles_total", result="failed")
            raise
        before = agent.store.get(project)
        agent.store.set_status(project, "converged")
        if before is None or before.status != "converged":
            # Wakes whoever follows this project (converge.py) as soon as it is applied.
            agent.bus.publish(events.Event("reconcile", project, "converged"))
        agent.metrics.inc("pcompose_reconciles_total", result="ok")
        return result
    return run


def _step_listener(agent: server.Agent) -> Callable[[str, executor.StepResult], None]:
    def listen(project: str, result: executor.StepResult) -> None:
        event = events.Event("step", project, result.status.value, result.step.resource,
                             result.step.action.value, result.reason or result.step.reason)
        agent.record_step(event)
        agent.bus.publish(event)
        if result.status is executor.Status.DONE:
            for happened in container_events.for_step(project, result.step):
                agent.bus.publish(happened)
        if result.status is not executor.Status.STARTED:
            agent.metrics.inc("pcompose_steps_total", action=result.step.action.value,
                              status=result.status.value)
    return listen


def _plan_listener(agent: server.Agent) -> Callable[[str, plans.Plan], None]:
    def listen(project: str, plan: plans.Plan) -> None:
        if plan:
            agent.bus.publish(events.Event("plan", project, "made", message=str(plan)))
    return listen


def _start_reconciling(agent: server.Agent, runtime: Runtime, resync: float,
                       workers: int) -> list[asyncio.Task]:
    reconcile = loop.ProjectReconciler(
        StoreSource(agent.store, runtime.translator), runtime.observer, runtime.actuator,
        resync=resync, listener=_step_listener(agent), plan_listener=_plan_listener(agent),
        locks=runtime.locks)
    ctrl = controller.Controller("projects", _reconcile_with_status(agent, reconcile),
                                 workers=workers)
    agent.on_change = ctrl.queue.add
    agent.metrics.counter("pcompose_reconciles_total", "Reconciles of a project by result",
                          ("result",))
    agent.metrics.counter("pcompose_steps_total", "Plan steps run, by action and result",
                          ("action", "status"))
    tasks = [asyncio.ensure_future(ctrl.run()),
             asyncio.ensure_future(sources.resync_every(
                 resync, lambda: [r.name for r in agent.store.list()], ctrl.queue))]
    if runtime.background is not None:
        tasks.append(asyncio.ensure_future(runtime.background(ctrl.queue.add)))
    if runtime.exit_dirs:
        for directory in runtime.exit_dirs:
            # A fresh run dir has none yet: watching a missing dir would watch nothing.
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tasks.append(asyncio.ensure_future(sources.watch_paths(
            runtime.exit_dirs, _projects_of_exits(agent, runtime), ctrl.queue)))
    return tasks


class _Lifelines:
    """The tasks that must run for the agent's life. The first one that ends, by an error or
    not, is logged (with its traceback) and ends the agent with TaskFailed."""

    def __init__(self, tasks: list[asyncio.Task]) -> None:
        self.ended = asyncio.Event()
        self.failure: str | None = None
        for task in tasks:
            task.add_done_callback(self._report_end)

    def _report_end(self, task: asyncio.Task) -> None:
        if task.cancelled():  # the agent stopping cancels them
            return
        # A coroutine has its function's __qualname__; typeshed knows it only of functions.
        name = getattr(task.get_coro(), "__qualname__", task.get_name())
        error = task.exception()
        if error is None:
            log.error("agent.task_failed", task=name, error="it returned")
            failure = f"{name} ended"
        else:
            log.error("agent.task_failed", task=name, exc_info=error,
                      error=f"{type(error).__name__}: {error}")
            failure = f"{name} failed: {type(error).__name__}: {error}"
        if self.failure is None:
            self.failure = failure
        self.ended.set()

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set or a task ended."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.ended.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def _projects_of_exits(agent: server.Agent, runtime: Runtime):
    """The projects to look at again for a batch of exit files, publishing each `die`."""
    def projects(paths: set[Path]) -> set[str]:
        found = set()
        for path in sorted(paths):
            project = runtime.project_of_exit(path)
            if project:
                found.add(project)
                died = container_events.for_exit(project, path, runtime.name_of_exit(path))
                if died is not None:
                    agent.bus.publish(died)
        return found
    return projects


async def run(root: Path, run_dir: Path, *, runtime: Runtime | None = None,
              resync: float = 10.0, workers: int = 4,
              stop: asyncio.Event | None = None,
              cluster: membership.Config | None = None,
              listen: peers.Listen | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT when it is not given). Raises
    store.Damaged without serving when the store fails its check, and TaskFailed after
    stopping when a task that must run for the agent's life ended. With `cluster`, the
    agent is a node of that cluster for its life (membership.Membership)."""
    tighten_dirs(root, run_dir)
    stop = stop if stop is not None else _stop_on_signals()
    with run_dir_lock(run_dir):
        st = open_store(root)
        agent = server.Agent(st, events.EventBus(), metrics.Metrics(), root, run_dir,
                             ops=runtime.ops if runtime else None)
        _hear_pulls(agent, runtime)
        tasks = _start_reconciling(agent, runtime, resync, workers) if runtime else []
        member = None
        if cluster is not None:
            member = membership.Membership(cluster.client(), membership.node_id(root), cluster)
            tasks.append(asyncio.ensure_future(member.run()))
            # Every node campaigns; the one elected places the cluster's replicas, and each
            # runs those assigned to it.
            tasks.append(asyncio.ensure_future(
                scheduler.Scheduler(member.client, member.id).run()))
            tasks.append(asyncio.ensure_future(cluster_assign.Assigned(agent, member).run()))
            # Its replicas' state, for depends_on conditions held on other nodes.
            tasks.append(asyncio.ensure_future(cluster_depends.Publisher(agent, member).run()))
            net_ctx = getattr(runtime.ops, "ctx", None) if runtime else None
            if net_ctx is not None:  # overlay networks need this host's network runtime
                overlays = overlay.Overlays(member, net_ctx, wake=agent.bus.subscribe())
                tasks.append(asyncio.ensure_future(overlays.run()))
        lifelines = _Lifelines(tasks)
        sock = api.socket_path(run_dir)
        app = server.make_app(agent)
        nodes.install(app, member)
        cluster_networks.install(app)
        if listen is not None and member is not None:
            peers.install(app, listen, member)
        runner = await server.serve(app, sock)
        if listen is not None and member is not None:
            await peers.serve(runner, listen)
        log.info("agent.started", pid=os.getpid(), root=str(root), run_dir=str(run_dir),
                 reconciling=runtime is not None)
        try:
            await lifelines.wait(stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
            if member is not None:
                await member.client.close()
            sock.unlink(missing_ok=True)
            _back_up(st)  # what this agent stored since it started is in the copy too
            st.close()
            log.info("agent.stopped", pid=os.getpid(), failure=lifelines.failure)
    if lifelines.failure is not None:
        raise TaskFailed(lifelines.failure)


def tighten_dirs(root: Path, run_dir: Path) -> None:
    """The state root and run dir are root's only (0700), whoever made them and how: a
    local user who could enter them would run the setuid files containers leave in their
    roots, and read every stack's environment."""
    for path in (root, run_dir):
        before = statefiles.tighten(path)
        if before is not None:
            log.warning("state_dir.tightened", path=str(path), was=before, now="0700")


def open_store(root: Path) -> store.Store:
    """The store, checked page by page before the agent serves from it; a store that passes
    is copied aside as the last good one (store.Damaged names that copy)."""
    st = store.Store(root)
    try:
        st.check()
        backup = st.back_up()
    except BaseException:
        st.close()
        raise
    log.info("store.checked", path=str(st.path), backup=str(backup))
    return st


def _back_up(st: store.Store) -> None:
    """At a stop: the store as the last good copy, if it still passes its check."""
    try:
        st.check()
        st.back_up()
    except (store.Damaged, OSError, sqlite3.Error) as error:
        log.error("store.not_backed_up", path=str(st.path), error=str(error))


def default_runtime(root: Path, run_dir: Path, host_netns: str | None = None) -> Runtime | None:
    """The runtime `pcompose agent` reconciles with: the machine's containers, networks and
    volumes through the controllers. `host_netns` makes the agent a simulated host: its
    bridges, rules and DNS live in that network namespace."""
    import dataclasses

    from controllers import context
    from reconciler.agent import machine, ops

    ctx = context.make(root, run_dir, netns=host_netns)
    runtime = machine.runtime_for(ctx)
    return dataclasses.replace(runtime, ops=ops.Ops(ctx, recent=runtime.observer.recent,
                                                    locks=runtime.locks))


def _hear_pulls(agent: server.Agent, runtime: Runtime | None) -> None:
    """Each layer's step of the pulls the controllers make goes on the bus (`up` streams the
    ones of its project): throttled where they are made, ten a second per layer at most."""
    ctx = getattr(runtime.ops, "ctx", None) if runtime else None
    if ctx is None:
        return

    def heard(project: str, image: str, step) -> None:
        agent.bus.publish(events.Event("pull", project, step.status, resource=image,
                                       action=step.layer,
                                       attributes={"current": step.current,
                                                   "total": step.total}))

    ctx.pull_listeners.append(heard)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop_ = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop_.add_signal_handler(sig, stop.set)
    return stop
