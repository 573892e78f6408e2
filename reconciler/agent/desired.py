"""A loaded stack as plan values: the CLI computes the config hashes, the agent derives the
desired state from the stored stack and those hashes (the Translator of the daemon)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json

from controllers import service_config
from reconciler.agent import store
from reconciler.plan import model
from reconciler.spec import hashing, model as spec_model, project as spec_project
from runtime import images, names as naming


def hashes(project: spec_project.Project) -> dict[str, str]:
    """Config hashes of the enabled services, computed where the files and environment are:
    the ones `config --hash` prints and the containers are labelled with."""
    return {name: project.config_hash(name) for name in project.services_enabled}


def limits(service: spec_model.Service) -> model.Limits:
    """The limits the container runs with, as plan values (one rule: service_config.resources).
    The config hash leaves these out: the plan compares them to update a container in place."""
    r = service_config.resources(service)
    return model.Limits(memory=r.memory_limit, memory_reservation=r.memory_reservation,
                        memory_swap=r.memory_swap, cpus=r.cpus, cpu_shares=r.cpu_shares,
                        cpuset=r.cpuset_cpus, pids=r.pids_limit, cpu_period=service.cpu_period)


def from_record(record: store.ProjectRecord) -> model.DesiredState:
    """The stored stack as a DesiredState; services are the ones the CLI sent hashes for."""
    try:
        stack = spec_model.Stack.model_validate(json.loads(record.stack))
    except ValueError as error:
        raise ValueError(f"stored stack is not a normalized stack: {error}") from None
    wanted = dict(record.hashes) if record.hashes else {
        name: hashing.config_hash(svc, stack, {}) for name, svc in stack.services.items()}
    missing = sorted(set(wanted) - set(stack.services))
    if missing:
        raise ValueError(f"hashes: no service {', '.join(missing)} in the stack")
    services = tuple(_service(record.name, name, stack, wanted[name]) for name in sorted(wanted))
    used_networks = {n for s in services for n in s.networks}
    used_volumes = {v for s in services for v in s.volumes}
    return model.DesiredState(
        record.name, services,
        tuple(_network(record.name, key, net) for key, net in sorted(stack.networks.items())
              if key in used_networks),
        tuple(_volume(record.name, key, vol) for key, vol in sorted(stack.volumes.items())
              if key in used_volumes))


class Translator:
    """daemon.Translator over from_record; with an image store, each service carries the ID
    its image reference resolves to there now, so a tag that moved (`image import`, `pull`)
    is a change the first pass of the next `up` recreates for (plan.diff: image_check)."""

    def __init__(self, image_store: images.Store | None = None) -> None:
        self.images = image_store
        # ref -> image ID, valid while refs.json is the file it was read from.
        self._ids: dict[str, str | None] = {}
        self._refs_version: bytes | None = None

    def desired(self, record: store.ProjectRecord) -> model.DesiredState:
        state = from_record(record)
        if self.images is None:
            return state
        return dataclasses.replace(state, services=tuple(
            dataclasses.replace(s, image_id=self.image_id(s.image)) for s in state.services))

    def image_id(self, ref: str) -> str | None:
        """The ID `ref` names in the store now; None when it is not there (the container's
        making pulls it) or cannot be read, which compares as no change."""
        assert self.images is not None
        try:
            # Its bytes, not its stat: two moves within a clock tick can leave the same size,
            # mtime and (reused) inode; the file is small and read once per pass.
            version: bytes | None = self.images.refs_file.read_bytes()
        except FileNotFoundError:
            version = None
        if version != self._refs_version:  # refs.json is replaced whole by every change
            self._ids.clear()
            self._refs_version = version
        if ref not in self._ids:
            found = None
            with contextlib.suppress(images.StoreError, OSError, ValueError):
                found = images.resolve(self.images, ref)
            self._ids[ref] = found.id if found is not None else None
        return self._ids[ref]


def _service(project: str, name: str, stack: spec_model.Stack,
             config: str) -> model.DesiredService:
    svc = stack.services[name]
    health = svc.healthcheck
    return model.DesiredService(
        project=project, name=name, config_hash=config, image=svc.image or naming.image(project, name),
        replicas=svc.replicas,
        networks=() if svc.network_mode else tuple(sorted(svc.networks)),
        volumes=tuple(sorted({v.source for v in svc.volumes
                              if v.type == "volume" and v.source in stack.volumes})),
        depends_on=tuple(model.Dependency(dep, model.Condition(d.condition), d.required,
                                          d.restart)
                         for dep, d in sorted(svc.depends_on.items())),
        restart=model.RestartPolicy.parse(svc.restart or "no"),
        limits=limits(svc), container_name=svc.container_name,
        has_healthcheck=bool(health and not health.disable and health.test
                             and health.test[0] != "NONE"))


def _definition_hash(definition) -> str:
    text = json.dumps(definition.model_dump(mode="json", exclude_none=True), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _network(project: str, key: str, net: spec_model.Network) -> model.DesiredNetwork:
    if net.external:
        return model.DesiredNetwork(key, net.name or key, external=True)
    return model.DesiredNetwork(key, net.name or naming.scoped(project, key), _definition_hash(net))


def _volume(project: str, key: str, vol: spec_model.Volume) -> model.DesiredVolume:
    if vol.external:
        return model.DesiredVolume(key, vol.name or key, external=True)
    return model.DesiredVolume(key, vol.name or naming.scoped(project, key), _definition_hash(vol))
