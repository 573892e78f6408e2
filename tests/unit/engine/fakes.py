"""FakeMachine: an in-memory Observer + Actuator for engine and agent unit tests (no runtime)."""

from __future__ import annotations

import dataclasses

from reconciler.engine import errors, loop
from reconciler.plan import model, plans


class FakeMachine:
    """Containers, networks and volumes as dicts; each step changes them as the runtime would.

    `fail` maps a resource to an exception its next steps raise; `log` records what ran.
    """

    def __init__(self, project: str = "demo") -> None:
        self.project = project
        self.now: float | None = None  # reported as observed_at when set
        self.containers: dict[str, model.ObservedContainer] = {}
        self.networks: dict[str, model.ObservedNetwork] = {}
        self.volumes: dict[str, model.ObservedVolume] = {}
        self.fail: dict[str, Exception] = {}
        self.log: list[str] = []

    async def observe(self, project: str) -> model.ObservedState:
        return model.ObservedState(
            tuple(c for c in self.containers.values() if c.project == project),
            tuple(n for n in self.networks.values() if n.project == project),
            tuple(v for v in self.volumes.values() if v.project == project), self.now)

    def functions(self, project: str):
        return {action: self._step for action in plans.Action}

    async def _step(self, step: plans.Step) -> None:
        self.log.append(f"{step.resource} {step.action.value}")
        if step.resource in self.fail:
            raise self.fail[step.resource]
        getattr(self, f"_{step.resource.split(':')[0]}")(step)

    def _network(self, step: plans.Step) -> None:
        if step.action is plans.Action.REMOVE:
            self.networks.pop(step.observed.name, None)
        elif step.action is plans.Action.REQUIRE:
            raise errors.PermanentError(f"network {step.desired.name} declared as external, "
                                        "but could not be found")
        else:
            net = step.desired
            self.networks[net.name] = model.ObservedNetwork(
                net.name, self.project, net.key, net.config_hash)

    def _volume(self, step: plans.Step) -> None:
        if step.action is plans.Action.REMOVE:
            self.volumes.pop(step.observed.name, None)
        else:
            vol = step.desired
            self.volumes[vol.name] = model.ObservedVolume(vol.name, self.project, vol.key,
                                                          vol.config_hash)

    def _service(self, step: plans.Step) -> None:
        if step.action is plans.Action.AWAIT:
            return
        if step.action is plans.Action.REMOVE:
            self.containers.pop(step.observed.name, None)
            return
        if step.action in (plans.Action.CREATE, plans.Action.RECREATE):
            if step.observed:
                self.containers.pop(step.observed.name, None)
            self.containers[step.desired.name] = _container_for(step.desired)
            return
        current = self.containers[step.observed.name]
        self.containers[current.name] = dataclasses.replace(
            current, state=model.ContainerState.RUNNING, limits=step.desired.service.limits)


def _container_for(desired: model.DesiredContainer) -> model.ObservedContainer:
    s = desired.service
    return model.ObservedContainer(
        desired.name, s.project, s.name, desired.replica, s.config_hash, s.image_id,
        model.ContainerState.RUNNING, limits=s.limits)


class FakeSource:
    """A DesiredSource over a dict, counting generations like the agent's store."""

    def __init__(self) -> None:
        self.projects: dict[str, loop.Desired] = {}
        self.applied_generations: dict[str, int] = {}

    def submit(self, state: model.DesiredState, options=model.DiffOptions(start_stopped=True)):
        generation = self.projects[state.project].generation + 1 \
            if state.project in self.projects else 1
        self.projects[state.project] = loop.Desired(state, options, generation)

    async def desired(self, project: str):
        return self.projects.get(project)

    async def applied(self, project: str, generation: int) -> None:
        self.applied_generations[project] = generation

    async def applied_generation(self, project: str) -> int:
        return self.applied_generations.get(project, 0)
