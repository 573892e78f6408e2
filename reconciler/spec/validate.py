"""Semantic checks compose-go makes after the schema: references, cycles, exclusions, ranges."""

from __future__ import annotations

from typing import NoReturn

from reconciler.spec import builds, errors, model, network_drivers


def check(stack: model.Stack, enabled: tuple[str, ...], place_of) -> list[errors.Warning]:
    """Raise SpecError on the first inconsistency; return warnings for soft problems."""
    warnings: list[errors.Warning] = []
    _check_resources(stack, place_of)
    network_drivers.check(stack, place_of)
    for name in enabled:
        _check_service(stack, name, enabled, place_of, warnings)
    _check_cycles(stack, enabled, place_of)
    warnings += builds.check(stack, enabled, place_of)
    return warnings


def _fail(message: str, place_of, path: tuple) -> NoReturn:
    raise errors.SpecError(message, place_of(path))


def _check_resources(stack: model.Stack, place_of) -> None:
    for kind in ("networks", "volumes"):
        for key, obj in getattr(stack, kind).items():
            if obj.external:
                for attr in ("driver", "driver_opts", "labels", "ipam"):
                    if getattr(obj, attr, None):
                        _fail(f'conflicting parameters "external" and "{attr}" specified',
                              place_of, (kind, key))
    for kind, sources in (("secrets", ("file", "environment")),
                          ("configs", ("file", "environment", "content"))):
        for key, obj in getattr(stack, kind).items():
            given = [s for s in sources if getattr(obj, s) is not None]
            if obj.external:
                continue
            if len(given) != 1:
                shown = " or ".join(f"`{s}`" for s in sources)
                what = "must declare either" if not given else "must declare only one of"
                _fail(f'{kind[:-1]} "{key}" {what} {shown}', place_of, (kind, key))


def _check_service(stack, name, enabled, place_of, warnings) -> None:
    svc: model.Service = stack.services[name]
    base = ("services", name)
    if svc.image is None and svc.build is None and svc.provider is None:
        _fail(f'service "{name}" has neither an image nor a build context specified',
              place_of, base)
    for dep, spec in svc.depends_on.items():
        if dep not in stack.services:
            _fail(f'service "{name}" depends on undefined service "{dep}"',
                  place_of, base + ("depends_on", dep))
        if dep not in enabled:
            message = f'service "{name}" depends on service "{dep}", which no enabled profile includes'
            if spec.required:
                _fail(message, place_of, base + ("depends_on", dep))
            warnings.append(errors.Warning(message, place_of(base + ("depends_on", dep))))
    if svc.network_mode and svc.networks:
        _fail(f"service {name} declares mutually exclusive `network_mode` and `networks`",
              place_of, base + ("network_mode",))
    for key in ("network_mode", "ipc", "pid", "uts"):
        value = getattr(svc, key)
        if value and value.startswith("service:") and value[8:] not in stack.services:
            _fail(f'service "{name}" refers to undefined service "{value[8:]}" in {key}',
                  place_of, base + (key,))
    for net in svc.networks:
        if net not in stack.networks:
            _fail(f'service "{name}" refers to undefined network {net}',
                  place_of, base + ("networks", net))
    _check_mounts(stack, svc, name, place_of)
    for kind in ("secrets", "configs"):
        for i, ref in enumerate(getattr(svc, kind)):
            if ref.source not in getattr(stack, kind):
                _fail(f'service "{name}" refers to undefined {kind[:-1]} {ref.source}',
                      place_of, base + (kind, i))
    _check_resource_values(svc, name, place_of)


def _check_mounts(stack, svc: model.Service, name: str, place_of) -> None:
    base = ("services", name, "volumes")
    targets: dict[str, int] = {}
    for i, vol in enumerate(svc.volumes):
        if not vol.target:
            _fail(f'invalid mount config for type "{vol.type}": field Target must not be empty',
                  place_of, base + (i,))
        if vol.type == "bind" and not vol.source:
            _fail('invalid mount config for type "bind": field Source must not be empty',
                  place_of, base + (i,))
        if vol.type == "tmpfs" and vol.source:
            _fail('invalid mount config for type "tmpfs": field Source must be empty',
                  place_of, base + (i,))
        if vol.type == "volume" and vol.source and vol.source not in stack.volumes:
            _fail(f'service "{name}" refers to undefined volume {vol.source}',
                  place_of, base + (i,))
        if vol.target in targets:
            _fail(f"duplicate mount target {vol.target}", place_of, base + (i,))
        targets[vol.target] = i
    for i, path in enumerate(svc.tmpfs):
        if path.split(":", 1)[0] in targets:
            _fail(f"tmpfs {path} has the same target as a volume",
                  place_of, ("services", name, "tmpfs", i))
    for i, src in enumerate(svc.volumes_from):
        ref = src.split(":", 1)[0]
        if not src.startswith("container:") and ref not in stack.services:
            _fail(f'service "{name}" refers to undefined service "{ref}" in volumes_from',
                  place_of, ("services", name, "volumes_from", i))
    for i, link in enumerate(svc.links):
        if link.split(":", 1)[0] not in stack.services:
            _fail(f'service "{name}" links to undefined service "{link.split(":", 1)[0]}"',
                  place_of, ("services", name, "links", i))


def _check_resource_values(svc: model.Service, name: str, place_of) -> None:
    base = ("services", name)
    deploy = svc.deploy
    if svc.scale is not None and deploy is not None and deploy.replicas is not None \
            and svc.scale != deploy.replicas:
        _fail('"scale" and "deploy.replicas" are set to different values', place_of,
              base + ("scale",))
    if svc.container_name and svc.replicas > 1:
        _fail(f'cannot set container_name and {svc.replicas} replicas: container names are unique',
              place_of, base + ("container_name",))
    limits = deploy.resources.limits if deploy and deploy.resources else None
    if limits is not None:
        for legacy, field in (("mem_limit", "memory"), ("cpus", "cpus"), ("pids_limit", "pids")):
            a, b = getattr(svc, legacy), getattr(limits, field)
            if a is not None and b is not None and a != b:
                _fail(f'"{legacy}" and "deploy.resources.limits.{field}" are set to different values',
                      place_of, base + (legacy,))
    reservations = deploy.resources.reservations if deploy and deploy.resources else None
    devices = list(reservations.devices) if reservations else []
    for i, dev in enumerate(devices):
        if dev.count is not None and dev.device_ids is not None:
            _fail('"count" and "device_ids" attributes are exclusive', place_of,
                  base + ("deploy", "resources", "reservations", "devices", i))
    for i, gpu in enumerate(svc.gpus):
        if gpu.count is not None and gpu.device_ids is not None:
            _fail('"count" and "device_ids" attributes are exclusive', place_of, base + ("gpus", i))
    for key, lim in svc.ulimits.items():
        if lim.soft > lim.hard:
            _fail(f"ulimit {key}: soft limit {lim.soft} is above hard limit {lim.hard}",
                  place_of, base + ("ulimits", key))
    if svc.develop is not None:
        for i, rule in enumerate(svc.develop.watch):
            if rule.action != "rebuild" and not rule.target:
                _fail(f'watch action "{rule.action}" needs a target', place_of,
                      base + ("develop", "watch", i))
    if svc.healthcheck is not None and svc.healthcheck.retries is not None \
            and svc.healthcheck.retries < 0:
        _fail("healthcheck retries must not be negative", place_of,
              base + ("healthcheck", "retries"))


def _check_cycles(stack: model.Stack, enabled: tuple[str, ...], place_of) -> None:
    active = set(enabled)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack_path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack_path.append(name)
        for dep in stack.services[name].depends_on:
            if dep not in active:
                continue  # services the profiles leave out cannot close a cycle
            if state.get(dep) == 1:
                cycle = stack_path[stack_path.index(dep):] + [dep]
                _fail("dependency cycle detected: " + " -> ".join(cycle), place_of,
                      ("services", name, "depends_on", dep))
            if dep not in state:
                visit(dep)
        stack_path.pop()
        state[name] = 2

    for name in sorted(enabled):
        if name not in state:
            visit(name)
