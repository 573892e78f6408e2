"""The real machine behind the reconcile loop: observe through the controllers, act through them.

`Machine` is the loop's Observer and Actuator: it reads containers, networks and volumes back
from the machine for a project, and maps each plan action to the controller call that does it.
It also runs what an agent keeps running beside the loop: the embedded DNS server and the
health checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from controllers import context, health, networks, service_config, services, volumes
from reconciler.agent import desired, recovery, store
from reconciler.engine import coalesce, errors, executor, sources
from reconciler.plan import model, plans, restarts
from reconciler.spec import model as spec_model
from runtime.cgroups import drivers as cgroup_drivers, model as cgroups_model
from runtime.net import bridge, dns, events, records
from runtime.oci import conmon, lifecycle, observe

log = structlog.get_logger(__name__)

STATES = {"created": model.ContainerState.CREATED, "running": model.ContainerState.RUNNING,
          "paused": model.ContainerState.PAUSED, "exited": model.ContainerState.EXITED}
LIMITS = "limits.json"
AWAIT_POLL = 0.2  # a dependency not ready yet is looked at again this much later
CHECK_EVERY = 1.0  # the nft table and the DNS sockets, which no netlink event announces
REGISTRY_RETRY = 10.0  # a registry that failed is asked again this much later


class Machine:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.store = store.Store(ctx.root)
        self._stacks: dict[str, tuple[tuple, spec_model.Stack]] = {}
        # project -> steps begun and ended, and the last observation with that count then.
        self._acts: dict[str, int] = {}
        self._seen: dict[str, tuple[int, model.ObservedState]] = {}
        self._dns: dns.Server | None = None
        # Every create and remove asks for a DNS rebuild; concurrent steps share them.
        self._refresh_dns = coalesce.Coalesced(self._rebuild_dns)
        # What a killed agent left half made goes once, before this one's first step: what
        # was made before it started cannot be this agent's work in progress.
        self._started = time.time()
        self._recovered = False
        self._recovering = asyncio.Lock()
        self._monitors = recovery.MonitorWatch()
        # One step at a time on a container name, whichever project asks for it.
        self._names: dict[str, asyncio.Lock] = {}
        # project -> container name -> its cgroup and the limits it was given, from the last
        # look: what a repair writes back.
        self._written: dict[str, dict[str, tuple[str, model.Limits]]] = {}
        self._cgroup_driver: cgroup_drivers.Driver | None = None

    # -- desired ------------------------------------------------------------------------
    def _stack(self, project: str) -> spec_model.Stack:
        """The submitted stack of `project`, parsed once per generation."""
        # Generations start again at 1 after a `down`: the submission time tells them apart.
        key = self.store.version(project)
        if key is None:
            raise errors.PermanentError(f"project {project} is not known")
        cached = self._stacks.get(project)
        if cached is None or cached[0] != key:
            record = self.store.get(project)
            if record is None:
                raise errors.PermanentError(f"project {project} is not known")
            key = (record.generation, record.updated_at)
            stack = spec_model.Stack.model_validate(json.loads(record.stack))
            cached = (key, stack)
            self._stacks[project] = cached
        return cached[1]

    # -- observe ------------------------------------------------------------------------
    async def observe(self, project: str) -> model.ObservedState:
        await self._recover()
        found = await services.observed_raw(self.ctx, project)
        for o in found:
            if o.monitor_pid is not None:
                self._monitors.watch(project, o.monitor_pid)
        live = {_name_of(o) for o in found if o.status in ("running", "paused")}
        # The kernel's side: bridges, veths and the nft table against the records.
        drift = await asyncio.to_thread(bridge.drift, self.ctx.net_host, live)
        kept = [o for o in found if not o.oneoff]
        containers = tuple(await asyncio.to_thread(
            lambda: [self._container(o, drift.containers.get(_name_of(o), "")) for o in kept]))
        self._written[project] = {_name_of(o): (o.cgroups_path, c.limits)
                                  for o, c in zip(kept, containers, strict=True)
                                  if o.cgroups_path and _name_of(o) in live}
        nets = tuple(model.ObservedNetwork(name, project, key, h, drift.networks.get(name, ""))
                     for name, key, h in networks.observe(self.ctx, project))
        vols = tuple(model.ObservedVolume(name, project, key, h)
                     for name, key, h in volumes.observe(self.ctx, project))
        state = model.ObservedState(containers, nets, vols, observed_at=time.time(),
                                    rules_drift=drift.rules)
        self._seen[project] = (self._acts.get(project, 0), state)
        return state

    async def _recover(self) -> None:
        if self._recovered:
            return
        async with self._recovering:
            if not self._recovered:
                await recovery.remove_half_made(self.ctx, self._started)
                self._recovered = True

    def recent(self, project: str) -> model.ObservedState | None:
        """What the last look at `project` saw, if no step began or ended since (then it is
        what a new look would see, short of a container exiting just now)."""
        acts, state = self._seen.get(project, (-1, None))
        return state if acts == self._acts.get(project, 0) else None

    def _acted(self, project: str) -> None:
        self._acts[project] = self._acts.get(project, 0) + 1

    def _container(self, o, net_drift: str = "") -> model.ObservedContainer:
        ctx = self.ctx
        started = lifecycle.started_at(ctx.layout, o.id)
        finished = o.exit.finished_at if o.exit else None
        ran_for = (finished - started).total_seconds() if started and finished else 0.0
        counts = context.read_json(ctx.container_dir(o.id) / context.RESTARTS)
        limits = context.read_json(ctx.container_dir(o.id) / LIMITS)
        health_state = context.health_of(ctx, o.id)
        stopped_at = context.stopped_by_user_at(ctx, o.id)
        written = model.Limits(**limits) if limits else model.Limits()
        limits_drift = ""
        if limits and o.cgroups_path and o.status in ("running", "paused"):
            limits_drift = self._cgroups().limits_drift(o.cgroups_path, _resources(written))
        return model.ObservedContainer(
            name=o.name, id=o.id, project=o.project, service=o.service, replica=o.replica,
            config_hash=o.config_hash, image_id=o.image or None,
            state=STATES.get(o.status, model.ContainerState.EXITED),
            exit_code=o.exit.code if o.exit else None,
            health=health_state.get("status") if health_state and o.status == "running" else None,
            limits=written, net_drift=net_drift, limits_drift=limits_drift,
            ran_for=max(0.0, ran_for),
            finished_at=finished.timestamp() if finished else None,
            restart_count=int(counts.get("count", 0)),
            restart_delay=float(counts.get("delay", 0.0)),
            stopped_by_user=stopped_at is not None,
            stopped_before_agent=stopped_at is not None and stopped_at < self._started,
            monitored=o.monitored)

    # -- act ----------------------------------------------------------------------------
    def functions(self, project: str) -> Mapping[plans.Action, executor.StepFunction]:
        A = plans.Action

        async def create(step: plans.Step) -> None:
            kind = step.resource.split(":", 1)[0]
            if kind == "network":
                await self._ensure_network(project, step.desired)
            elif kind == "volume":
                await self._ensure_volume(project, step.desired)
            else:
                await self._create_container(project, step.desired)

        async def recreate(step: plans.Step) -> None:
            kind = step.resource.split(":", 1)[0]
            if kind == "network":
                await networks.remove(self.ctx, step.desired.name)
                await self._ensure_network(project, step.desired)
            elif kind == "volume":
                await self._ensure_volume(project, step.desired)
            else:
                async with self._name(step.observed.name):
                    await self._stop_before_removal(project, step.observed.id)
                    await services.remove_container(self.ctx, step.observed.id)
                await self._create_container(project, step.desired)

        async def update(step: plans.Step) -> None:
            target = step.desired.service.limits
            stack = self._stack(project)
            svc = stack.services[step.desired.service.name]
            await lifecycle.update(self.ctx.layout, step.observed.id, service_config.resources(svc))
            _write_limits(self.ctx, step.observed.id, target)

        async def start(step: plans.Step) -> None:
            cid = step.observed.id
            observed = step.observed
            if step.reason.startswith(("restart policy", "exited")):
                delay = restarts.next_delay(observed.restart_delay, observed.ran_for)
                counts = {"count": observed.restart_count + 1, "delay": delay}
            else:
                counts = {"count": 0, "delay": 0.0}
            context.write_json(self.ctx.container_dir(cid) / context.RESTARTS, counts)
            async with self._name(observed.name):
                with _classified():
                    await services.start_container(self.ctx, cid)

        async def unpause(step: plans.Step) -> None:
            await lifecycle.unpause(self.ctx.layout, step.observed.id)

        async def restart(step: plans.Step) -> None:
            async with self._name(step.observed.name):
                await lifecycle.stop(self.ctx.layout, step.observed.id)
                with _classified():
                    await services.start_container(self.ctx, step.observed.id)

        async def remove(step: plans.Step) -> None:
            kind = step.resource.split(":", 1)[0]
            if kind == "network":
                await networks.remove(self.ctx, step.observed.name)
            elif kind == "volume":
                await volumes.remove(self.ctx, step.observed.name)
            else:
                record = self.store.get(project)
                wipe = bool(record and record.options.remove_volumes)
                async with self._name(step.observed.name):
                    await self._stop_before_removal(project, step.observed.id)
                    await services.remove_container(self.ctx, step.observed.id,
                                                    remove_anonymous=wipe)
            await self._refresh_dns()

        async def require(step: plans.Step) -> None:
            kind = step.resource.split(":", 1)[0]
            try:
                if kind == "network":
                    await networks.require(self.ctx, step.desired.name)
                else:
                    await volumes.require(self.ctx, step.desired.name)
            except Exception as err:
                raise errors.PermanentError(str(err)) from None

        async def await_(step: plans.Step) -> None:
            await self._await(project, step)

        async def repair(step: plans.Step) -> None:
            kind = step.resource.split(":", 1)[0]
            log.warning("drift.repairing", project=project, resource=step.resource,
                        drift=step.reason)
            if kind == "network":
                assert isinstance(step.desired, model.DesiredNetwork)
                await self._ensure_network(project, step.desired)
            elif kind == "rules":
                await asyncio.to_thread(bridge.sync_rules, self.ctx.net_host)
            else:
                assert isinstance(step.observed, model.ObservedContainer)
                name = step.observed.name
                async with self._name(name):
                    await asyncio.to_thread(self._repair_container, project, name)

        def counted(function: executor.StepFunction) -> executor.StepFunction:
            async def run(step: plans.Step) -> None:
                self._acted(project)
                try:
                    await function(step)
                finally:
                    self._acted(project)
            return run

        return {action: counted(function) for action, function in (
            (A.CREATE, create), (A.RECREATE, recreate), (A.UPDATE, update), (A.START, start),
            (A.UNPAUSE, unpause), (A.RESTART, restart), (A.REMOVE, remove),
            (A.REQUIRE, require), (A.AWAIT, await_), (A.REPAIR, repair))}

    async def _ensure_network(self, project: str, want: model.DesiredNetwork) -> None:
        stack = self._stack(project)
        try:
            await networks.ensure(self.ctx, project, want.key, want.name,
                                  stack.networks[want.key], want.config_hash)
        except networks.NetworkControllerError as err:
            raise errors.PermanentError(str(err)) from None
        await self._refresh_dns()

    async def _ensure_volume(self, project: str, want: model.DesiredVolume) -> None:
        stack = self._stack(project)
        try:
            await volumes.ensure(self.ctx, project, want.key, want.name,
                                 stack.volumes[want.key], want.config_hash)
        except volumes.volumes.VolumeError as err:
            raise errors.PermanentError(str(err)) from None

    async def _create_container(self, project: str, want: model.DesiredContainer) -> None:
        stack = self._stack(project)
        svc = want.service
        async with self._name(want.name):
            await self._check_name_free(project, want)
            with _classified():
                cid = await services.run_container(
                    self.ctx, stack, project, svc.name, replica=want.replica, name=want.name,
                    config_hash=svc.config_hash, start=want.start)
            if not want.start:  # `create`: left created by later passes too, until start/up
                context.mark_stopped_by_user(self.ctx, cid, True)
        _write_limits(self.ctx, cid, svc.limits)
        await self._refresh_dns()

    async def _stop_before_removal(self, project: str, cid: str) -> None:
        """A container that goes (scale down, recreate, down) is stopped as docker stops it:
        its stop signal, SIGKILL only after its grace period, or after `up -t`'s. The grace
        period is spent outside the executor's limit, so removals end together."""
        record = self.store.get(project)
        timeout = record.options.stop_timeout if record else None
        async with executor.waiting():
            await lifecycle.stop_before_removal(self.ctx.layout, cid, timeout)

    def _repair_container(self, project: str, name: str) -> None:
        """Its veths made again into the namespace it runs in (same addresses and MACs) and
        its limits written back; its processes are never touched."""
        bridge.reattach(self.ctx.net_host, name)
        written = self._written.get(project, {}).get(name)
        if written is not None:
            self._cgroups().write_limits(written[0], _resources(written[1]))

    def _cgroups(self) -> cgroup_drivers.Driver:
        if self._cgroup_driver is None:
            self._cgroup_driver = cgroup_drivers.detect()
        return self._cgroup_driver

    def _name(self, name: str) -> asyncio.Lock:
        """Two steps on one name at once (a `container_name` two projects want) would mount a
        root twice and remove each other's half-made container: they take turns."""
        return self._names.setdefault(name, asyncio.Lock())

    async def _check_name_free(self, project: str, want: model.DesiredContainer) -> None:
        found = await observe.named(self.ctx.layout, want.name)
        if found is None or (found.project, found.service, found.replica) == \
                (project, want.service.name, want.replica):
            return
        owner = f"service {found.service} of project {found.project}"
        raise errors.PermanentError(f'the container name "{want.name}" is already in use by '
                                    f"a container of {owner}; remove it or choose another name")

    async def _await(self, project: str, step: plans.Step) -> None:
        target = step.desired_as(model.DesiredService)
        condition = "healthy" if step.reason == "healthy" else "completed"
        # One look: a dependency not ready yet ends the pass (NotReady), so the wait never
        # holds the project's key against a user's verb; the loop looks again soon.
        state = await self.observe(project)
        mine = [c for c in state.containers if c.service == target.name]
        if condition == "healthy":
            bad = [c for c in mine if c.health == "unhealthy"]
            if bad:
                raise errors.TemporaryError(f"container {bad[0].name} is unhealthy", 2.0)
            if mine and all(c.health == "healthy" for c in mine):
                return
            if mine and any(c.health is None and c.state is model.ContainerState.RUNNING
                            for c in mine):
                raise errors.PermanentError(f"service {target.name} has no healthcheck")
        else:
            failed = [c for c in mine if c.state is model.ContainerState.EXITED
                      and c.exit_code not in (0, None)]
            if failed:  # docker compose's words
                raise errors.PermanentError(
                    f'service "{target.name}" didn\'t complete successfully: '
                    f"exit {failed[0].exit_code}")
            if mine and all(c.state is model.ContainerState.EXITED and c.exit_code == 0
                            for c in mine):
                return
        raise errors.NotReady(f"waiting for {target.name} to be {condition}", AWAIT_POLL)

    # -- beside the loop ----------------------------------------------------------------
    async def _rebuild_dns(self) -> None:
        if self._dns is not None:
            views = await asyncio.to_thread(bridge.dns_views, self.ctx.net_host)
            await self._dns.update(views)

    async def background(self, enqueue: Callable[[str], None]) -> None:
        """The DNS server, the health checker and the watch on conmons, for as long as the
        agent runs."""
        self._dns = dns.Server.for_host(self.ctx.net_host)
        self._monitors.start(enqueue)
        # Link and address changes in the host namespace wake the project that owns the
        # link at once; the check finds what no event announces. Either ending ends this.
        link_events = events.open_socket(self.ctx.net_host.netns)
        try:
            await self._refresh_dns()
            await asyncio.gather(
                health.monitor(self.ctx, enqueue),
                sources.watch_socket(link_events, events.link_names, self._projects_of_links,
                                     enqueue),
                sources.check_every(CHECK_EVERY, self._check, enqueue))
        finally:
            link_events.close()
            self._monitors.stop()
            await self._dns.close()
            self._dns = None

    async def _projects_of_links(self, names: set[str] | None) -> set[str]:
        """The projects whose bridges or containers' veths among `names` drifted (None: every
        project with a network). The agent's own making of links is announced as well: a
        look at the links, not a pass of the project, tells the two apart."""
        owners = networks.projects(self.ctx)
        if names is None:
            return set(owners.values())
        drift = await asyncio.to_thread(bridge.drift, self.ctx.net_host, None, False)
        found = {owners[n.name] for n in records.networks(self.ctx.root).values()
                 if n.bridge in names and n.name in drift.networks and n.name in owners}
        for name, att in records.attachments(self.ctx.root).items():
            if name in drift.containers and {e.host_ifname for e in att.endpoints} & names:
                project = owners.get(att.endpoints[0].network) if att.endpoints else None
                if project:
                    found.add(project)
        return found

    async def _check(self) -> list[str]:
        """DNS listeners that lost a socket are opened again here; a changed nft table names
        the projects with networks, and a limit changed by hand its container's project,
        whose next pass repairs them."""
        if self._dns is not None:
            dead = self._dns.dead()
            if dead:
                await self._dns.restart(dead)
        return await asyncio.to_thread(self._drifted_projects)

    def _drifted_projects(self) -> list[str]:
        found: set[str] = set()
        why = bridge.rules_drift(self.ctx.net_host)
        if why:
            log.warning("drift.found", drift=why)
            found.update(networks.projects(self.ctx).values())
        driver = self._cgroups()
        for project, containers in list(self._written.items()):
            for name, (path, limits) in list(containers.items()):
                why = driver.limits_drift(path, _resources(limits))
                if why:
                    log.warning("drift.found", project=project, container=name, drift=why)
                    found.add(project)
                    break
        return sorted(found)

    def project_of_exit(self, path: Path) -> str | None:
        return lifecycle.project_of(self.ctx.layout, path.name)


@contextlib.contextmanager
def _classified():
    """How a container's making or start fails, as a retry policy: a registry that failed is
    asked again later; what the stack asks and cannot be made (a missing secret or image, a
    value runc refuses, such as a NUL in the environment) waits for the next `up`, as
    retrying it cannot help."""
    try:
        yield
    except services.RegistryUnreachable as err:
        raise errors.TemporaryError(str(err), REGISTRY_RETRY) from None
    except (services.ServiceError, ValueError, conmon.ConmonError) as err:
        raise errors.PermanentError(str(err)) from None


def _name_of(o: observe.Observed) -> str:
    """The name the network records know a container by."""
    return getattr(o, "name", o.id)


def _resources(limits: model.Limits) -> cgroups_model.Resources:
    """The plan's limits as the cgroup driver writes them (desired.limits, the other way)."""
    return cgroups_model.Resources(
        memory_limit=limits.memory, memory_reservation=limits.memory_reservation,
        memory_swap=limits.memory_swap, cpus=limits.cpus,
        cpu_period=limits.cpu_period or cgroups_model.DEFAULT_CPU_PERIOD,
        cpu_shares=limits.cpu_shares, cpuset_cpus=limits.cpuset, pids_limit=limits.pids)


def _write_limits(ctx: context.Context, cid: str, limits: model.Limits) -> None:
    path = ctx.container_dir(cid) / LIMITS
    if path.parent.is_dir():
        context.write_json(path, dataclasses.asdict(limits))


def runtime_for(ctx: context.Context):
    """The daemon's Runtime over this machine."""
    from reconciler.agent import daemon
    machine = Machine(ctx)
    return daemon.Runtime(translator=desired.Translator(ctx.images), observer=machine,
                          actuator=machine,
                          exit_dirs=(ctx.layout.exit_dir,),
                          project_of_exit=machine.project_of_exit,
                          name_of_exit=lambda path: lifecycle.name_of(ctx.layout, path.name),
                          background=machine.background)
