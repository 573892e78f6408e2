"""What the agent could only refuse once it runs a container, refused at load time with its place.

NUL bytes in strings that reach argv, env or a file name; names too long for a hostname, a DNS
name or a container id; two services that would create the same container; mount targets that
are relative, climb with `..` or hide the whole root; sub-paths that leave their volume; secret
and config files that are directories. A missing secret or config file is only a warning, as
docker compose loads such a stack and fails when it creates the container.
"""

from __future__ import annotations

import os

from reconciler.spec import errors, model

# A host name: the kernel takes at most 64 bytes, the runtime passes on at most 63.
HOSTNAME_MAX = 63
# A domain name: the kernel's limit (setdomainname), runc refuses longer ones.
DOMAINNAME_MAX = 64
# A DNS name: labels of at most 63 characters, 253 in all. Service and container names are
# resolved on the stack's networks.
LABEL_MAX = 63
NAME_MAX = 253
# A container's name is its id in the runtime (runc's state, the rootfs and bundle dirs),
# which takes at most 128 characters.
CONTAINER_NAME_MAX = 128


def _fail(message: str, place_of, path: tuple):
    raise errors.SpecError(message, place_of(path))


# ---- before the model: every string of the merged data --------------------------------------


def check_strings(data: dict, place_of) -> None:
    """Refuse a NUL character in any key or string: exec and the environment end a string at
    NUL, so what runs would differ from what the file says (or the runtime fails)."""
    configs = data.get("configs")
    if isinstance(configs, dict):
        # A config's content is written to a file, never passed to a process: NUL is data there.
        data = dict(data, configs={
            name: {k: v for k, v in config.items() if k != "content"}
            if isinstance(config, dict) else config for name, config in configs.items()})
    found = _find_nul(data)
    if found is not None:
        path, text = found
        _fail(f"contains a NUL character: {text!r}", place_of, path)


def _find_nul(node):
    """(path, string) of the first key or string holding NUL, or None. The path is built only
    on the way back from a find: this runs over every value of every stack."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(key, str) and "\0" in key:
            return (key,), key
        if isinstance(value, str):
            if "\0" in value:
                return (key,), value
        elif isinstance(value, (dict, list)):
            found = _find_nul(value)
            if found is not None:
                return (key,) + found[0], found[1]
    return None


# ---- after the model: the enabled services ---------------------------------------------------


def check(*, project_name: str, stack: model.Stack, enabled: tuple[str, ...],
          place_of) -> list[errors.Warning]:
    """Raise SpecError at the first thing of the enabled services the agent could not run;
    return warnings for what may still change before they start (files not there yet)."""
    warnings: list[errors.Warning] = []
    for name in enabled:
        svc = stack.services[name]
        base = ("services", name)
        _check_names(project_name, name, svc, base, place_of)
        if svc.working_dir and not svc.working_dir.startswith("/"):
            _fail(f'working_dir "{svc.working_dir}" must be an absolute path', place_of,
                  base + ("working_dir",))
        _check_mounts(svc, base, place_of)
        _check_files(stack, svc, place_of, warnings)
    _check_container_names(project_name, stack, enabled, place_of)
    return warnings


def _dns_name_problem(name: str) -> str | None:
    """Why `name` cannot be a DNS name (a label over 63 characters, over 253 in all), or None."""
    if len(name) > NAME_MAX:
        return f"is {len(name)} characters long, more than the {NAME_MAX} of a DNS name"
    longest = max(name.split("."), key=len)
    if len(longest) > LABEL_MAX:
        return (f"has a part of {len(longest)} characters between dots, more than the "
                f"{LABEL_MAX} of a DNS label")
    return None


def _id_problem(name: str) -> str | None:
    if len(name) > CONTAINER_NAME_MAX:
        return (f"is {len(name)} characters long, more than the {CONTAINER_NAME_MAX} of a "
                "container id")
    return None


def _check_names(project: str, name: str, svc: model.Service, base: tuple, place_of) -> None:
    problem = _dns_name_problem(name)
    if problem:
        _fail(f'service name "{_short(name)}" {problem}', place_of, base)
    if svc.container_name:
        problem = _dns_name_problem(svc.container_name) or _id_problem(svc.container_name)
        if problem:
            _fail(f'container_name "{_short(svc.container_name)}" {problem}', place_of,
                  base + ("container_name",))
    else:
        longest = f"{project}-{name}-{max(svc.replicas, 1)}"
        if _id_problem(longest):
            _fail(f'the container name "{_short(longest)}" {_id_problem(longest)}: shorten '
                  "the project or service name, or set container_name", place_of, base)
    if svc.hostname and len(svc.hostname) > HOSTNAME_MAX:
        _fail(f'hostname "{_short(svc.hostname)}" is {len(svc.hostname)} characters long, more '
              f"than the {HOSTNAME_MAX} a host name may have", place_of, base + ("hostname",))
    if svc.domainname and len(svc.domainname) > DOMAINNAME_MAX:
        _fail(f'domainname "{_short(svc.domainname)}" is {len(svc.domainname)} characters long, '
              f"more than the {DOMAINNAME_MAX} the kernel takes", place_of,
              base + ("domainname",))


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _check_container_names(project: str, stack: model.Stack, enabled, place_of) -> None:
    """Two services must not create the same container: the second would wait on the first's
    name for ever. Explicit names clash with each other or with the `<project>-<service>-<n>`
    names of services that set none."""
    taken: dict[str, tuple] = {}
    for name in sorted(enabled):
        svc = stack.services[name]
        names: list[tuple[str, tuple[str, ...]]]
        if svc.container_name:
            names = [(svc.container_name, ("services", name, "container_name"))]
        else:
            names = [(f"{project}-{name}-{n}", ("services", name))
                     for n in range(1, svc.replicas + 1)]
        for cname, path in names:
            if cname in taken:
                first, second = sorted((taken[cname], path), key=_written_order(place_of))
                _fail(f'container name "{cname}" is already used by {_where(first, place_of)}',
                      place_of, second)
            taken[cname] = path


def _written_order(place_of):
    def key(path: tuple):
        place = place_of(path)
        return (place.file or "", place.line or 0, place.column or 0)
    return key


def _where(path: tuple, place_of) -> str:
    place = place_of(path)
    return str(place) if place.line is not None else errors.format_path(path)


# ---- mount targets and sub-paths -------------------------------------------------------------


def _target_problem(target: str, relative_ok: bool = False) -> str | None:
    """Why a path inside the container cannot be a mount target, or None: it must be absolute
    (unless `relative_ok`), hold no `.` or `..` part, and not be `/` itself."""
    if target[:1] == "/" and "/." not in target and target.strip("/"):
        return None  # the common case, without splitting
    if not target.startswith("/") and not relative_ok:
        return "must be an absolute path"
    parts = [p for p in target.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return 'must not contain "." or ".." parts'
    if not parts:
        return "would hide the container's whole file system"
    return None


def _subpath_problem(subpath: str) -> str | None:
    """Why a sub-path cannot select a directory inside its volume or image, or None."""
    if subpath.startswith("/"):
        return "must be a relative path"
    if any(p == ".." for p in subpath.split("/")):
        return 'must not contain ".." parts'
    return None


def _check_mounts(svc: model.Service, base: tuple, place_of) -> None:
    for i, vol in enumerate(svc.volumes):
        path = base + ("volumes", i)
        problem = _target_problem(vol.target) if vol.target else None
        if problem:
            _fail(f'mount target "{vol.target}" {problem}', place_of, path)
        for kind, options in (("volume", vol.volume), ("image", vol.image)):
            subpath = options.subpath if options is not None else None
            problem = _subpath_problem(subpath) if subpath else None
            if problem:
                _fail(f'{kind}.subpath "{subpath}" {problem}', place_of,
                      path + (kind, "subpath"))
    for i, entry in enumerate(svc.tmpfs):
        target = entry.split(":", 1)[0]
        problem = _target_problem(target)
        if problem:
            _fail(f'tmpfs target "{target}" {problem}', place_of, base + ("tmpfs", i))
    for kind in ("secrets", "configs"):
        for i, ref in enumerate(getattr(svc, kind)):
            target = _file_target(kind, ref)
            problem = _target_problem(target, relative_ok=True)
            if problem:
                shown = "target" if ref.target else f"target (from the {kind[:-1]}'s name)"
                _fail(f'{shown} "{target}" {problem}', place_of, base + (kind, i))


def _file_target(kind: str, ref) -> str:
    """Where the agent mounts a secret or config: relative secret targets go under
    /run/secrets; a config without a target goes to /<name>."""
    if kind == "secrets":
        target = ref.target or ref.source
        return target if target.startswith("/") else f"/run/secrets/{target}"
    return ref.target or f"/{ref.source}"


# ---- secret and config files -----------------------------------------------------------------


def _check_files(stack: model.Stack, svc: model.Service, place_of,
                 warnings: list[errors.Warning]) -> None:
    """A secret or config read from a file must be a file the agent can mount (the check that
    references exist is validate's)."""
    for kind in ("secrets", "configs"):
        table = getattr(stack, kind)
        for ref in getattr(svc, kind):
            top = table.get(ref.source)
            if top is None or top.external or not top.file:
                continue
            path = (kind, ref.source, "file")
            if os.path.isdir(top.file):
                _fail(f"{kind[:-1]} file {top.file} is a directory, not a file", place_of, path)
            if not os.path.exists(top.file):
                warning = errors.Warning(f"{kind[:-1]} file {top.file} not found: the services "
                                         "using it cannot start until it exists", place_of(path))
                if warning not in warnings:
                    warnings.append(warning)
