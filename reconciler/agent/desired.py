"""A loaded stack as plan values: the CLI computes the config hashes, the agent derives the
desired state from the stored stack and those hashes (the Translator of the daemon)."""

from __future__ import annotations

import hashlib
import json

from reconciler.agent import store
from reconciler.plan import model
from reconciler.spec import hashing
from reconciler.spec import model as spec_model
from reconciler.spec import project as spec_project

# Keys a running container takes in place (runc update); they stay out of the hash the plan
# compares so that changing them updates rather than recreates. They are model.Limits.
LIMIT_KEYS = ("mem_limit", "mem_reservation", "memswap_limit", "cpus", "cpu_shares",
              "cpuset", "pids_limit")


def config_hash(service: spec_model.Service, stack: spec_model.Stack, environ) -> str:
    """The spec's canonical service without the in-place limits, as sha256 hex."""
    data = hashing.canonical(service, stack, environ)
    for key in LIMIT_KEYS:
        data.pop(key, None)
    deploy = data.get("deploy") or {}
    resources = deploy.get("resources") or {}
    resources.pop("limits", None)
    reservations = resources.get("reservations") or {}
    reservations.pop("memory", None)
    # Emptied containers go too: adding a first limit must not look like a new config.
    for parent, key, child in ((resources, "reservations", reservations),
                               (deploy, "resources", resources), (data, "deploy", deploy)):
        if key in parent and not child:
            del parent[key]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def hashes(project: spec_project.Project) -> dict[str, str]:
    """Config hashes of the enabled services, computed where the files and environment are."""
    return {name: config_hash(project.stack.services[name], project.stack, project.environ)
            for name in project.services_enabled}


def limits(service: spec_model.Service) -> model.Limits:
    """deploy.resources first, then the legacy keys, as docker compose merges them."""
    resources = service.deploy.resources if service.deploy and service.deploy.resources \
        else None
    hard = resources.limits if resources and resources.limits else None
    soft = resources.reservations if resources and resources.reservations else None
    swap = service.memswap_limit
    return model.Limits(
        memory=(hard.memory if hard and hard.memory is not None else service.mem_limit),
        memory_reservation=(service.mem_reservation if service.mem_reservation is not None
                            else soft.memory if soft else None),
        memory_swap=int(swap) if isinstance(swap, int | float) else None,
        cpus=(hard.cpus if hard and hard.cpus is not None else service.cpus),
        cpu_shares=service.cpu_shares, cpuset=service.cpuset,
        pids=(hard.pids if hard and hard.pids is not None else service.pids_limit))


def from_record(record: store.ProjectRecord) -> model.DesiredState:
    """The stored stack as a DesiredState; services are the ones the CLI sent hashes for."""
    try:
        stack = spec_model.Stack.model_validate(json.loads(record.stack))
    except ValueError as error:
        raise ValueError(f"stored stack is not a normalized stack: {error}") from None
    wanted = dict(record.hashes) if record.hashes else {
        name: config_hash(svc, stack, {}) for name, svc in stack.services.items()}
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
    """daemon.Translator over from_record."""

    def desired(self, record: store.ProjectRecord) -> model.DesiredState:
        return from_record(record)


def _service(project: str, name: str, stack: spec_model.Stack,
             config: str) -> model.DesiredService:
    svc = stack.services[name]
    health = svc.healthcheck
    return model.DesiredService(
        project=project, name=name, config_hash=config, image=svc.image or f"{project}-{name}",
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
    return model.DesiredNetwork(key, net.name or f"{project}_{key}", _definition_hash(net))


def _volume(project: str, key: str, vol: spec_model.Volume) -> model.DesiredVolume:
    if vol.external:
        return model.DesiredVolume(key, vol.name or key, external=True)
    return model.DesiredVolume(key, vol.name or f"{project}_{key}", _definition_hash(vol))
