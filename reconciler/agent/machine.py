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
from reconciler.plan import model, plans, waits
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
        """The executor's action -> function: each looks up the step's kind (what it acts
        on: a service's container, a network, a volume, the rules) in one table. What to do
        was decided by the plan; nothing here asks the desired state."""
        table = self._step_table(project)

        async def dispatch(step: plans.Step) -> None:
            self._acted(project)
            try:
                await table[(step.resource.split(":", 1)[0], step.action)](step)
            finally:
                self._acted(project)
        return {action: dispatch for _, action in table}

    def _step_table(self, project: str) -> dict[tuple[str, plans.Action], executor.StepFunction]:
        A = plans.Action
        net, vol = model.DesiredNetwork, model.DesiredVolume
        seen_net, seen_vol = model.ObservedNetwork, model.ObservedVolume
        seen, wanted = model.ObservedContainer, model.DesiredContainer

        async def recreate_network(step: plans.Step) -> None:
            await networks.remove(self.ctx, step.desired_as(net).name)
            await self._ensure_network(project, step.desired_as(net))

        async def recreate_container(step: plans.Step) -> None:
            old = step.observed_as(seen)
            async with self._name(old.name):
                await self._stop_before_removal(project, old.id)
                await services.remove_container(self.ctx, old.id)
            await self._create_container(project, step.desired_as(wanted))

        async def update(step: plans.Step) -> None:
            want, old = step.desired_as(wanted), step.observed_as(seen)
            svc = self._stack(project).services[want.service.name]
            await lifecycle.update(self.ctx.layout, old.id, service_config.resources(svc))
            _write_limits(self.ctx, old.id, want.service.limits)

        async def start(step: plans.Step) -> None:
            observed = step.observed_as(seen)
            # The plan decided the restart accounting (plan/restarts.py); it is written down.
            counts = step.restarts or model.RestartCount()
            context.write_json(self.ctx.container_dir(observed.id) / context.RESTARTS,
                               dataclasses.asdict(counts))
            async with self._name(observed.name):
                with _classified():
                    await services.start_container(self.ctx, observed.id)

        async def unpause(step: plans.Step) -> None:
            await lifecycle.unpause(self.ctx.layout, step.observed_as(seen).id)

        async def restart(step: plans.Step) -> None:
            observed = step.observed_as(seen)
            async with self._name(observed.name):
                await lifecycle.stop(self.ctx.layout, observed.id)
                with _classified():
                    await services.start_container(self.ctx, observed.id)

        async def remove_network(step: plans.Step) -> None:
            await networks.remove(self.ctx, step.observed_as(seen_net).name)
            await self._refresh_dns()

        async def remove_volume(step: plans.Step) -> None:
            await volumes.remove(self.ctx, step.observed_as(seen_vol).name)
            await self._refresh_dns()

        async def remove_container(step: plans.Step) -> None:
            old = step.observed_as(seen)
            record = self.store.get(project)
            wipe = bool(record and record.options.remove_volumes)
            async with self._name(old.name):
                await self._stop_before_removal(project, old.id)
                await services.remove_container(self.ctx, old.id, remove_anonymous=wipe)
            await self._refresh_dns()

        async def require_network(step: plans.Step) -> None:
            with _external():
                await networks.require(self.ctx, step.desired_as(net).name)

        async def require_volume(step: plans.Step) -> None:
            with _external():
                await volumes.require(self.ctx, step.desired_as(vol).name)

        async def repair_network(step: plans.Step) -> None:
            _repairing(project, step)
            await self._ensure_network(project, step.desired_as(net))

        async def repair_rules(step: plans.Step) -> None:
            _repairing(project, step)
            await asyncio.to_thread(bridge.sync_rules, self.ctx.net_host)

        async def repair_container(step: plans.Step) -> None:
            _repairing(project, step)
            name = step.observed_as(seen).name
            async with self._name(name):
                await asyncio.to_thread(self._repair_container, project, name)

        return {
            ("network", A.CREATE): lambda step: self._ensure_network(project, step.desired_as(net)),
            ("network", A.RECREATE): recreate_network,
            ("network", A.REMOVE): remove_network,
            ("network", A.REQUIRE): require_network,
            ("network", A.REPAIR): repair_network,
            ("volume", A.CREATE): lambda step: self._ensure_volume(project, step.desired_as(vol)),
            ("volume", A.RECREATE): lambda step: self._ensure_volume(project, step.desired_as(vol)),
            ("volume", A.REMOVE): remove_volume,
            ("volume", A.REQUIRE): require_volume,
            ("service", A.CREATE): lambda step: self._create_container(project,
                                                                       step.desired_as(wanted)),
            ("service", A.RECREATE): recreate_container,
            ("service", A.UPDATE): update,
            ("service", A.START): start,
            ("service", A.UNPAUSE): unpause,
            ("service", A.RESTART): restart,
            ("service", A.REMOVE): remove_container,
            ("service", A.AWAIT): lambda step: self._await(project, step),
            ("service", A.REPAIR): repair_container,
            ("rules", A.REPAIR): repair_rules,
        }

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
            # `create` (start False): left created by later passes too, until start or up.
            context.mark_stopped_by_user(self.ctx, cid, not want.start)
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
        """One look at the dependency; the plan says what it means (plan/waits.py). Not ready
        yet ends the pass (NotReady), so the wait never holds the project's key against a
        user's verb; the loop looks again soon."""
        target = step.desired_as(model.DesiredService)
        state = await self.observe(project)
        found = waits.verdict(target.name, step.reason, state.containers)
        raise_for = _AWAIT_ERRORS.get(found.outcome)
        if raise_for is not None:
            raise raise_for(found)

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
def _external():
    """A resource the stack declares external that is not there: the user makes it (or the
    next `up` stops asking); retrying alone will not (failures.py looks again later)."""
    try:
        yield
    except Exception as err:
        raise errors.PermanentError(str(err)) from None


def _repairing(project: str, step: plans.Step) -> None:
    log.warning("drift.repairing", project=project, resource=step.resource, drift=step.reason)


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


# What a dependency's verdict means for the await step's retry (engine/errors.py).
_AWAIT_ERRORS: dict[waits.Outcome, Callable[[waits.Verdict], Exception]] = {
    waits.Outcome.NOT_YET: lambda v: errors.NotReady(v.reason, AWAIT_POLL),
    waits.Outcome.FAILED: lambda v: errors.TemporaryError(v.reason, v.retry_in or AWAIT_POLL),
    waits.Outcome.NEVER: lambda v: errors.PermanentError(v.reason),
}


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
