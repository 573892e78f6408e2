"""Plain data of one file -> long syntax; after the merge, the defaults docker compose fills in.

`canonical_file` runs per file (before merge): short forms become long, relative paths become
absolute against the file's base directory. `complete` runs once on the merged data: env files
folded into `environment`, default network, implicit dependencies, resource names.
"""

from __future__ import annotations

import os

from reconciler.spec import envfile, errors, shortsyntax as ss, yamlload

RESOURCE_KINDS = ("networks", "volumes", "secrets", "configs")


class _Ctx:
    def __init__(self, base: str, home: str | None, lenient: bool, place_of, warnings,
                 positions: dict) -> None:
        self.base, self.home, self.lenient, self.place_of = base, home, lenient, place_of
        self.warnings, self.positions = warnings, positions


def canonical_file(data: dict, base: str, home: str | None, lenient: bool, place_of,
                   warnings: list | None = None, positions: dict | None = None) -> None:
    """Rewrite `data` (one file, interpolated) into long syntax, in place.

    `positions` (the document's path -> line/column) follows entries that a port range
    expanded into several, so later errors still point at the line the user wrote.
    """
    ctx = _Ctx(base, home, lenient, place_of, warnings if warnings is not None else [],
               positions if positions is not None else {})
    services = data.get("services")
    if isinstance(services, dict):
        for name, svc in services.items():
            if isinstance(svc, dict):
                canonical_service(svc, ("services", name), ctx)
    for kind in RESOURCE_KINDS:
        table = data.get(kind)
        if isinstance(table, dict):
            for key, obj in table.items():
                table[key] = _canonical_resource(kind, obj, ctx, (kind, key))


def _canonical_resource(kind: str, obj, ctx: _Ctx, path: tuple):
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        return obj
    obj = dict(obj)
    if "labels" in obj:
        obj["labels"] = ss.list_or_dict(obj["labels"], bare="")
    ext = obj.get("external")
    if isinstance(ext, dict) and set(ext) <= {"name"}:
        # The deprecated `external: {name: x}` is `external: true` + `name: x`.
        obj["external"] = True
        if "name" in ext:
            ctx.warnings.append(errors.Warning(
                "external.name is deprecated, use name with external: true",
                ctx.place_of(path + ("external",))))
            if obj.get("name", ext["name"]) != ext["name"]:
                raise errors.SpecError('conflicting parameters "name" and "external.name"',
                                       ctx.place_of(path + ("external",)))
            obj["name"] = ext["name"]
    if kind in ("secrets", "configs") and isinstance(obj.get("file"), str) \
            and not (ctx.lenient and "$" in obj["file"]):
        obj["file"] = ss.abs_path(obj["file"], ctx.base, ctx.home)
    return obj


def _apply(svc: dict, key: str, fn) -> None:
    """svc[key] = fn(svc[key]), looking through `!override`, leaving `!reset` alone."""
    if key not in svc:
        return
    val = svc[key]
    if isinstance(val, yamlload.Override):
        val.value = fn(val.value)
    elif val is not yamlload.RESET:
        svc[key] = fn(val)


def canonical_service(svc: dict, path: tuple, ctx: _Ctx) -> None:
    def step(key, fn):
        try:
            _apply(svc, key, fn)
        except ss.ShortSyntaxError as err:
            raise ss.place_error(err, ctx.place_of, path + (key,)) from None

    for key in ss.LIST_OR_DICT:
        step(key, lambda v, k=key: ss.list_or_dict(v, bare=None if k == "environment" else ""))
    for key in ("labels", "annotations"):
        step(key, _null_is_empty_string)
    for key in ss.STRING_OR_LIST:
        step(key, ss.string_or_list)
    step("label_file", lambda v: [ss.abs_path(p, ctx.base, ctx.home) if isinstance(p, str) else p
                                  for p in v] if isinstance(v, list) else v)
    step("security_opt", lambda v: [_seccomp_path(o, ctx) for o in v] if isinstance(v, list) else v)
    step("command", ss.command)
    step("entrypoint", ss.command)
    step("env_file", lambda v: ss.env_files(v, ctx.base, ctx.home))
    step("ports", lambda v: _ports(v, path + ("ports",), ctx))
    step("expose", lambda v: [str(x) if isinstance(x, int) and not isinstance(x, bool) else x
                              for x in v] if isinstance(v, list) else v)
    step("group_add", lambda v: [str(x) if isinstance(x, int) and not isinstance(x, bool) else x
                                 for x in v] if isinstance(v, list) else v)
    step("volumes", lambda v: _each_indexed(
        v, lambda item: ss.volume(item, ctx.base, ctx.home, ctx.lenient)))
    step("depends_on", ss.depends_on)
    step("networks", ss.networks)
    step("extra_hosts", lambda v: v if ctx.lenient and _has_template(v) else ss.extra_hosts(v))
    step("secrets", ss.secrets)
    step("configs", ss.secrets)
    step("ulimits", ss.ulimits)
    step("devices", lambda v: _each_indexed(v, ss.device))
    step("gpus", lambda v: [{"count": "all"}] if v == "all" else v)
    step("extends", lambda v: {"service": v} if isinstance(v, str) else v)
    step("pull_policy", lambda v: "missing" if v == "if_not_present" else v)
    step("healthcheck", _healthcheck)
    step("build", lambda v: _build(v, ctx))
    step("deploy", _deploy)
    step("post_start", _hooks)
    step("pre_start", _hooks)
    step("pre_stop", _hooks)
    step("develop", _develop)


def _seccomp_path(option, ctx: _Ctx):
    """`seccomp=FILE` (or `seccomp:FILE`): the profile file, relative to the project
    directory, made absolute like a bind source; `unconfined` and other options stay."""
    if not isinstance(option, str):
        return option
    key, sep, value = option.partition("=")
    if not sep:
        key, sep, value = option.partition(":")
    if key.strip() != "seccomp" or value.strip() in ("", "unconfined") \
            or (ctx.lenient and "$" in value):
        return option
    return f"{key}{sep}{ss.abs_path(value.strip(), ctx.base, ctx.home)}"


def _null_is_empty_string(value):
    """`label:` with nothing after it is an empty label, as docker compose reads it."""
    if isinstance(value, dict):
        return {k: "" if v is None else v for k, v in value.items()}
    return value


def _has_template(value) -> bool:
    return isinstance(value, list) and any(isinstance(v, str) and "$" in v for v in value)


def _ports(value, path: tuple, ctx: _Ctx):
    out = _each_indexed(value, lambda item: ss.port(item, ctx.lenient), flatten=True)
    if isinstance(value, list) and len(out) != len(value):
        origin = [i for i, item in enumerate(value) for _ in ss.port(item, ctx.lenient)]
        _reindex(ctx.positions, path, origin)
    return out


def _reindex(positions: dict, path: tuple, origin: list[int]) -> None:
    """Entry n of the list at `path` now comes from entry origin[n]: move places along."""
    depth = len(path)
    old = {k: v for k, v in positions.items() if k[:depth] == path and len(k) > depth}
    for key in old:
        del positions[key]
    for new_index, old_index in enumerate(origin):
        for key, pos in old.items():
            if key[depth] == old_index:
                positions[path + (new_index,) + key[depth + 1:]] = pos


def _each_indexed(value, fn, flatten: bool = False):
    if not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        try:
            result = fn(item)
        except ss.ShortSyntaxError as err:
            raise ss.ShortSyntaxError(str(err), (i,) + err.sub) from None
        if flatten:
            out.extend(result)
        else:
            out.append(result)
    return out


def _healthcheck(value):
    if isinstance(value, dict):
        value = dict(value)
        test = value.get("test")
        if isinstance(test, str):
            value["test"] = ["CMD-SHELL", test]
        elif isinstance(test, yamlload.Override) and isinstance(test.value, str):
            test.value = ["CMD-SHELL", test.value]
    return value


def _build(value, ctx: _Ctx):
    if isinstance(value, str):
        value = {"context": value}
    if not isinstance(value, dict):
        return value
    value = dict(value)
    for key in ("args", "labels", "ssh", "additional_contexts"):
        _apply(value, key, lambda v, k=key: ss.list_or_dict(v, bare=None if k != "labels" else ""))
    _apply(value, "extra_hosts", ss.extra_hosts)
    _apply(value, "secrets", ss.secrets)
    _apply(value, "ulimits", ss.ulimits)
    _apply(value, "no_cache_filter", ss.string_or_list)
    context = value.get("context")
    if isinstance(context, str) and not _is_remote(context) \
            and not (ctx.lenient and "$" in context):
        value["context"] = ss.abs_path(context, ctx.base, ctx.home)
    extra = value.get("additional_contexts")
    if isinstance(extra, dict):  # local dirs as compose-go has them: from the project dir
        value["additional_contexts"] = {
            k: ss.abs_path(v, ctx.base, ctx.home) if isinstance(v, str) and not _is_remote(v)
            and not v.startswith("service:") and not (ctx.lenient and "$" in v) else v
            for k, v in extra.items()}
    return value


def _is_remote(context: str) -> bool:
    return "://" in context or context.startswith("git@")


def _deploy(value):
    if not isinstance(value, dict):
        return value
    value = dict(value)
    _apply(value, "labels", lambda v: ss.list_or_dict(v, bare=""))
    resources = value.get("resources")
    if isinstance(resources, dict) and isinstance(resources.get("reservations"), dict):
        devices = resources["reservations"].get("devices")
        if isinstance(devices, list):
            for dev in devices:
                if isinstance(dev, dict):
                    _apply(dev, "options", lambda v: ss.list_or_dict(v, bare=""))
    return value


def _hooks(value):
    if not isinstance(value, list):
        return value
    out = []
    for hook in value:
        if isinstance(hook, dict):
            hook = dict(hook)
            _apply(hook, "command", ss.command)
            _apply(hook, "environment", lambda v: ss.list_or_dict(v, bare=None))
        out.append(hook)
    return out


def _develop(value):
    if isinstance(value, dict) and isinstance(value.get("watch"), list):
        value = dict(value)
        rules = []
        for rule in value["watch"]:
            if isinstance(rule, dict):
                rule = dict(rule)
                _apply(rule, "ignore", ss.string_or_list)
                _apply(rule, "include", ss.string_or_list)
                if isinstance(rule.get("exec"), dict):
                    rule["exec"] = _hooks([rule["exec"]])[0]
            rules.append(rule)
        value["watch"] = rules
    return value


# ---- after the merge ---------------------------------------------------------------------


def complete(data: dict, project: str, environ, place_of, working_dir: str) -> None:
    """Fill in what docker compose derives (in place): env files, default network, names."""
    services = data.get("services")
    if not isinstance(services, dict):
        return
    uses_default = False
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        path = ("services", name)
        _fold_env_files(svc, environ, place_of, path)
        _fold_label_files(svc, place_of, path)
        if isinstance(svc.get("build"), dict):
            _complete_build(svc["build"], environ, working_dir)
        if not svc.get("network_mode") and not svc.get("networks"):
            svc["networks"] = {"default": None}
        if isinstance(svc.get("networks"), dict) and "default" in svc["networks"]:
            uses_default = True
        _implicit_dependencies(svc)
    _name_resources(data, project, uses_default)


def _complete_build(build: dict, environ, working_dir: str) -> None:
    build.setdefault("context", working_dir)
    if "dockerfile_inline" not in build:
        build.setdefault("dockerfile", "Dockerfile")
    args = build.get("args")
    if isinstance(args, dict):
        # A bare build arg takes its value from the environment, or is left to the Dockerfile.
        build["args"] = {k: (environ.get(k) if v is None else v) for k, v in args.items()
                         if v is not None or environ.get(k) is not None}


def _fold_env_files(svc: dict, environ, place_of, path: tuple) -> None:
    """docker compose folds env_file contents into environment; `environment` wins."""
    files = svc.get("env_file")
    env = svc.get("environment")
    if env is not None and not isinstance(env, dict):
        return
    merged: dict = {}
    if isinstance(files, list):
        for i, item in enumerate(files):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                continue
            file_path = item["path"]
            if not os.path.exists(file_path):
                if item.get("required", True) in (False, "false", "False"):
                    continue
                raise errors.SpecError(f"env file {file_path} not found",
                                       place_of(path + ("env_file", i)))
            fmt = item.get("format")
            if fmt not in (None, "raw"):
                raise errors.SpecError(f'unsupported env file format "{fmt}" (only "raw")',
                                       place_of(path + ("env_file", i)))
            merged.update(envfile.read(file_path, environ, fmt))
    merged.update(env or {})
    resolved = {}
    for key, val in merged.items():
        if val is None:
            val = environ.get(key)
            if val is None:
                continue  # a bare KEY nobody sets is left out, as docker compose does
        resolved[key] = val
    if resolved or env is not None:
        svc["environment"] = resolved


def _fold_label_files(svc: dict, place_of, path: tuple) -> None:
    files = svc.get("label_file")
    if not isinstance(files, list) or not files:
        return
    labels: dict = {}
    for i, file_path in enumerate(files):
        if not isinstance(file_path, str):
            return
        if not os.path.exists(file_path):
            raise errors.SpecError(f"label file {file_path} not found",
                                   place_of(path + ("label_file", i)))
        labels.update({k: v or "" for k, v in envfile.read(file_path, {}).items()})
    if isinstance(svc.get("labels"), dict):
        labels.update(svc["labels"])
    svc["labels"] = labels


def _implicit_dependencies(svc: dict) -> None:
    """links, `service:x` namespaces and volumes_from start after what they point at."""
    deps = svc.get("depends_on")
    if deps is None:
        deps = {}
    if not isinstance(deps, dict):
        return
    wanted = []
    for link in _list(svc.get("links")):
        if isinstance(link, str):
            wanted.append(link.split(":", 1)[0])
    for key in ("network_mode", "ipc", "pid", "uts"):
        val = svc.get(key)
        if isinstance(val, str) and val.startswith("service:"):
            wanted.append(val[len("service:"):])
    for src in _list(svc.get("volumes_from")):
        if isinstance(src, str) and not src.startswith("container:"):
            wanted.append(src.split(":", 1)[0])
    for dep in wanted:
        deps.setdefault(dep, {"condition": "service_started", "restart": True, "required": True})
    if deps:
        svc["depends_on"] = deps


def _list(value) -> list:
    """A list as written, or nothing: a value of the wrong type is the schema's to refuse."""
    return value if isinstance(value, list) else []


def _name_resources(data: dict, project: str, uses_default: bool) -> None:
    if uses_default:
        nets = data.get("networks")
        if nets is None:
            nets = data["networks"] = {}
        if isinstance(nets, dict):
            nets.setdefault("default", {})
    for kind in RESOURCE_KINDS:
        table = data.get(kind)
        if not isinstance(table, dict):
            continue
        for key, obj in table.items():
            if not isinstance(obj, dict):
                continue
            if obj.get("external") in (True, "true", "True"):
                obj.setdefault("name", key)
            else:
                obj.setdefault("name", f"{project}_{key}")
