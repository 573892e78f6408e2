"""diff(desired, observed, options) -> Plan: every decision of a reconcile, with no I/O.

Order of a plan: networks, volumes, services in depends_on order (each service's
containers after its networks, volumes and the conditions it waits for), then orphans.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from reconciler.plan import model, plans, restarts, waits
from reconciler.plan.plans import Action, Edge


@dataclass
class _Builder:
    desired: model.DesiredState
    observed: model.ObservedState
    options: model.DiffOptions
    steps: list[plans.Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    network_steps: dict[str, int] = field(default_factory=dict)  # network key -> step
    volume_steps: dict[str, int] = field(default_factory=dict)
    service_steps: dict[str, list[int]] = field(default_factory=dict)
    await_steps: dict[tuple[str, model.Condition], int] = field(default_factory=dict)
    recreated_networks: set[str] = field(default_factory=set)
    container_names: dict[str, str] = field(default_factory=dict)  # name -> its service
    restarted_services: set[str] = field(default_factory=set)

    def add(self, resource: str, action: Action, reason: str = "", after=(), **kw) -> int:
        number = len(self.steps) + 1
        edges = tuple(sorted(set(after), key=lambda e: (e.after, not e.required)))
        self.steps.append(plans.Step(number, resource, action, reason, edges, **kw))
        return number


def diff(desired: model.DesiredState, observed: model.ObservedState,
         options: model.DiffOptions = model.DiffOptions()) -> plans.Plan:
    """The steps that make `observed` match `desired`; none when they match."""
    b = _Builder(desired, _own(observed, desired.project), options)
    _networks(b)
    _rules(b)
    _volumes(b)
    for service in dependency_order(desired.services):
        _service(b, service)
    _orphans(b)
    return plans.Plan(tuple(b.steps), tuple(b.warnings))


def _own(observed: model.ObservedState, project: str) -> model.ObservedState:
    return model.ObservedState(
        tuple(sorted((c for c in observed.containers if c.project == project),
                     key=lambda c: c.name)),
        tuple(n for n in observed.networks if n.project == project),
        tuple(v for v in observed.volumes if v.project == project), observed.observed_at,
        observed.rules_drift)


def dependency_order(services: tuple[model.DesiredService, ...]) -> list[model.DesiredService]:
    """Services with their dependencies first, ties by name; a cycle is an error."""
    by_name = {s.name: s for s in services}
    done: dict[str, model.DesiredService] = {}

    def visit(service: model.DesiredService, path: tuple[str, ...]) -> None:
        if service.name in done:
            return
        if service.name in path:
            cycle = " -> ".join(path[path.index(service.name):] + (service.name,))
            raise ValueError(f"services.{service.name}.depends_on: dependency cycle {cycle}")
        for dep in sorted(service.depends_on, key=lambda d: d.service):
            if dep.service in by_name:
                visit(by_name[dep.service], path + (service.name,))
        done[service.name] = service

    for service in sorted(services, key=lambda s: s.name):
        visit(service, ())
    return list(done.values())


def _networks(b: _Builder) -> None:
    observed = {n.name: n for n in b.observed.networks}
    for net in sorted(b.desired.networks, key=lambda n: n.key):
        found = observed.get(net.name)
        resource = f"network:{net.key}"
        if net.external:
            if net.name not in observed:
                b.network_steps[net.key] = b.add(resource, Action.REQUIRE, "external",
                                                 desired=net)
        elif found is None:
            b.network_steps[net.key] = b.add(resource, Action.CREATE, desired=net)
        elif net.config_hash and found.config_hash != net.config_hash:
            b.network_steps[net.key] = b.add(resource, Action.RECREATE, "config changed",
                                             desired=net, observed=found)
            b.recreated_networks.add(net.key)
        elif found.drift:
            # Its containers keep running: their veths are put back by their own repairs.
            b.network_steps[net.key] = b.add(resource, Action.REPAIR, found.drift,
                                             desired=net, observed=found)


def _rules(b: _Builder) -> None:
    """The agent's nft table, re-applied whole when it is not what was applied, after the
    bridges it names are back. Only a project with networks of its own looks at it."""
    if not b.observed.rules_drift or not any(not n.external for n in b.desired.networks):
        return
    after = [Edge(n) for n in b.network_steps.values()]
    b.add("rules", Action.REPAIR, b.observed.rules_drift, after)


def _volumes(b: _Builder) -> None:
    observed = {v.name: v for v in b.observed.volumes}
    for vol in sorted(b.desired.volumes, key=lambda v: v.key):
        found = observed.get(vol.name)
        resource = f"volume:{vol.key}"
        if vol.external:
            if found is None:
                b.volume_steps[vol.key] = b.add(resource, Action.REQUIRE, "external",
                                                desired=vol)
        elif found is None:
            b.volume_steps[vol.key] = b.add(resource, Action.CREATE, desired=vol)
        elif vol.config_hash and found.config_hash and found.config_hash != vol.config_hash:
            # As docker compose without -y: data is never dropped silently.
            b.warnings.append(f'volume "{vol.name}" exists but does not match the '
                              "configuration in the stack file; kept as it is")


def _service(b: _Builder, service: model.DesiredService) -> None:
    replicas = b.options.replicas(service)
    if service.container_name and replicas > 1:
        b.warnings.append(f'service "{service.name}" sets container_name and cannot be '
                          f"scaled to {replicas}; running 1")
        replicas = 1
    names = service.container_names(replicas)
    _claim(b, service, names)
    keep, extra = _pick([c for c in b.observed.containers if c.service == service.name], names)
    decisions = []
    for replica, name in enumerate(names, start=1):
        container = keep.get(replica)
        desired = model.DesiredContainer(service, replica, name)
        if desired.resource in b.options.removed:
            if container is not None:  # made again by a pass that looked before the `rm`
                extra.append((container, "removed"))
            continue
        decision = _decide(b, service, container)
        if decision:
            action, reason, delay, counts = decision
            if not _starts(b, container):
                desired = dataclasses.replace(desired, start=False)
                reason = f"{reason}, not started" if reason else "not started"
            decisions.append((desired, container, (action, reason, delay, counts)))
    after = _infrastructure_edges(b, service) + _dependency_edges(b, service) if decisions else []
    numbers = []
    for desired, container, (action, reason, delay, counts) in decisions:
        numbers.append(b.add(desired.resource, action, reason, after, desired=desired,
                             observed=container, delay=delay, restarts=counts))
        if action in (Action.RECREATE, Action.RESTART):
            b.restarted_services.add(service.name)
    b.service_steps[service.name] = numbers
    for container, reason in extra:
        b.add(container.resource, Action.REMOVE, reason, observed=container)


def _starts(b: _Builder, container: model.ObservedContainer | None) -> bool:
    """Whether a container a step makes is started: always, but with no_start (`create`) only
    one that replaces a running container, as `create` does not stop what runs."""
    return not b.options.no_start or (container is not None and container.state in (
        model.ContainerState.RUNNING, model.ContainerState.PAUSED))


def _claim(b: _Builder, service: model.DesiredService, names: tuple[str, ...]) -> None:
    """One container per name: two services that want the same name would make, remove and
    mount over each other's container for ever, so the stack is refused instead."""
    for name in names:
        other = b.container_names.setdefault(name, service.name)
        if other != service.name:
            raise ValueError(f'services.{service.name}.container_name: "{name}" is also the '
                             f'name of a container of service "{other}"')


def _pick(containers: list[model.ObservedContainer], names: tuple[str, ...]):
    """Per replica the container to keep (its exact name wins, else the first by name);
    the rest are removed: duplicates, then scale-down from the highest replica."""
    by_replica: dict[int, list[model.ObservedContainer]] = {}
    for c in containers:
        by_replica.setdefault(c.replica, []).append(c)
    keep: dict[int, model.ObservedContainer] = {}
    duplicates: list[tuple[model.ObservedContainer, str]] = []
    surplus: list[tuple[model.ObservedContainer, str]] = []
    for replica, found in sorted(by_replica.items()):
        if replica > len(names):
            surplus.extend((c, "scale down") for c in found)
            continue
        exact = [c for c in found if c.name == names[replica - 1]]
        chosen = (exact or found)[0]
        keep[replica] = chosen
        duplicates.extend((c, "duplicate") for c in found if c is not chosen)
    surplus.sort(key=lambda pair: -pair[0].replica)
    return keep, duplicates + surplus


def _decide(b: _Builder, service: model.DesiredService,
            container: model.ObservedContainer | None):
    """(action, reason, delay, restart accounting) for one replica, or None when it is as it
    should be. A start carries what it leaves for the next exit's decision: one more restart
    in a row when the restart policy restarts it, a fresh count when anything else does."""
    if container is None:
        return Action.CREATE, "", 0.0, None
    if not container.monitored and container.state is not model.ContainerState.EXITED:
        # A repair, not a change: --no-recreate does not keep a container nobody watches.
        return Action.RECREATE, "monitor lost", 0.0, None
    reason = _recreate_reason(b, service, container)
    if reason:
        return Action.RECREATE, reason, 0.0, None
    state = container.state
    should_run, start_reason, delay, by_policy = _should_start(b, service, container)
    if should_run and container.limits != service.limits and not b.options.no_recreate:
        return Action.RECREATE, "limits changed", 0.0, None
    if should_run:
        counts = restarts.counted(container) if by_policy else model.RestartCount()
        return Action.START, start_reason, delay, counts
    if state is model.ContainerState.PAUSED and b.options.start_stopped:
        return Action.UNPAUSE, "paused", 0.0, None
    if state is model.ContainerState.RUNNING:
        restarted = sorted(d.service for d in service.depends_on
                           if d.restart and d.service in b.restarted_services)
        if restarted:
            return Action.RESTART, f"dependency {', '.join(restarted)} restarted", 0.0, None
    live = state in (model.ContainerState.RUNNING, model.ContainerState.PAUSED)
    if live and container.limits != service.limits:
        return Action.UPDATE, "limits changed", 0.0, None
    if live and (container.net_drift or container.limits_drift):
        # Veths and limits back as they were made; the process runs on.
        why = "; ".join(filter(None, (container.net_drift, container.limits_drift)))
        return Action.REPAIR, why, 0.0, None
    return None


def _recreate_reason(b: _Builder, service: model.DesiredService,
                     container: model.ObservedContainer) -> str:
    if b.options.no_recreate:
        return ""
    if b.options.force_recreate:
        return "forced"
    if container.config_hash != service.config_hash:
        return "config changed"
    if b.options.image_check and service.image_id and container.image_id != service.image_id:
        return "image changed"
    running = container.state is model.ContainerState.RUNNING
    if running and container.networks is not None \
            and set(container.networks) != set(_network_names(b, service)):
        return "networks changed"
    if container.volumes is not None and set(container.volumes) != set(_volume_names(b, service)):
        return "volumes changed"
    if set(service.networks) & b.recreated_networks:
        return "network recreated"
    return ""


def _should_start(b: _Builder, service: model.DesiredService,
                  container: model.ObservedContainer) -> tuple[bool, str, float, bool]:
    """Whether to start it, why, after what delay, and whether its restart policy does."""
    if container.state is model.ContainerState.CREATED:
        # Left created by `create` (no_start, or the mark it leaves for later submissions)
        # until `start` or `up`.
        if b.options.no_start or (container.stopped_by_user and not b.options.start_stopped):
            return False, "", 0.0, False
        return True, "created", 0.0, False
    if container.state is not model.ContainerState.EXITED:
        return False, "", 0.0, False
    if b.options.start_stopped and not (
            container.finished_at is not None and b.options.submitted_at
            and container.finished_at >= b.options.submitted_at):
        return True, "stopped", 0.0, False
    decision = restarts.decide_for(container, service.restart)
    if not decision.restart:
        return False, decision.reason, 0.0, False
    if b.observed.observed_at is None or container.finished_at is None:
        # Nothing to count the backoff from: waiting the whole delay on every pass would
        # postpone the restart for ever.
        return True, decision.reason, 0.0, True
    elapsed = b.observed.observed_at - container.finished_at
    return True, decision.reason, round(max(0.0, decision.delay - elapsed), 3), True


def _network_names(b: _Builder, service: model.DesiredService) -> list[str]:
    names = {n.key: n.name for n in b.desired.networks}
    return [names.get(key, key) for key in service.networks]


def _volume_names(b: _Builder, service: model.DesiredService) -> list[str]:
    names = {v.key: v.name for v in b.desired.volumes}
    return [names.get(key, key) for key in service.volumes]


def _infrastructure_edges(b: _Builder, service: model.DesiredService) -> list[Edge]:
    edges = [Edge(b.network_steps[k]) for k in service.networks if k in b.network_steps]
    return edges + [Edge(b.volume_steps[k]) for k in service.volumes if k in b.volume_steps]


def _dependency_edges(b: _Builder, service: model.DesiredService) -> list[Edge]:
    edges = []
    for dep in service.depends_on:
        target = b.desired.service(dep.service)
        if target is None:
            if dep.required:
                b.warnings.append(f'service "{service.name}" depends on undefined service '
                                  f'"{dep.service}"')
            continue
        if _all_removed(b, target):
            continue  # `rm`: what the user removed is not waited for
        # `create` starts nothing, so there is no health or completion to wait for.
        if dep.condition is model.Condition.STARTED or b.options.no_start:
            edges += [Edge(n, dep.required) for n in b.service_steps.get(dep.service, ())]
        else:
            edges.append(Edge(_await_step(b, target, dep.condition), dep.required))
    return edges


def _all_removed(b: _Builder, service: model.DesiredService) -> bool:
    """Every replica of `service` was removed by `rm` (none wanted: scale 0, is not)."""
    replicas = 1 if service.container_name else b.options.replicas(service)
    return replicas > 0 and all(f"service:{service.name}:{n}" in b.options.removed
                                for n in range(1, replicas + 1))


def _await_step(b: _Builder, target: model.DesiredService, condition: model.Condition) -> int:
    key = (target.name, condition)
    if key not in b.await_steps:
        reason = {model.Condition.HEALTHY: waits.HEALTHY,
                  model.Condition.COMPLETED: waits.COMPLETED}[condition]
        after = [Edge(n) for n in b.service_steps.get(target.name, ())]
        b.await_steps[key] = b.add(f"service:{target.name}", Action.AWAIT, reason, after,
                                   desired=target)
    return b.await_steps[key]


def _orphans(b: _Builder) -> None:
    """Containers of services no longer wanted; with remove_orphans (as `down` sets it) also
    networks and, with remove_volumes, volumes, after every container removal."""
    wanted = {s.name for s in b.desired.services}
    orphans = [c for c in b.observed.containers if c.service not in wanted]
    if not b.options.remove_orphans:
        if orphans:
            names = ", ".join(c.name for c in orphans)
            b.warnings.append(f"Found orphan containers ({names}) for this project. If you "
                              "removed or renamed this service in your compose file, you can "
                              "run this command with the --remove-orphans flag to clean it up.")
        return
    for c in sorted(orphans, key=lambda c: (c.service, -c.replica)):
        b.add(c.resource, Action.REMOVE, "orphan", observed=c)
    removals = [Edge(s.number) for s in b.steps
                if s.action is Action.REMOVE and s.resource.startswith("service:")]
    networks = {n.name for n in b.desired.networks}
    for net in sorted(b.observed.networks, key=lambda n: n.key):
        if net.name not in networks:
            b.add(f"network:{net.key}", Action.REMOVE, "orphan", removals, observed=net)
    if b.options.remove_volumes:
        volumes = {v.name for v in b.desired.volumes}
        for vol in sorted(b.observed.volumes, key=lambda v: v.key):
            if vol.name not in volumes:
                b.add(f"volume:{vol.key}", Action.REMOVE, "orphan", removals, observed=vol)
