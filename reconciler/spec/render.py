"""The normalized stack as `docker compose config` prints it: YAML or JSON text."""

from __future__ import annotations

import json

import yaml

from reconciler.spec import hashing, project as projectmod

TOP_ORDER = ("name", "services", "networks", "volumes", "secrets", "configs", "models")


def document(project: projectmod.Project, names=None) -> dict:
    """The services `names` (default: the enabled ones) and every top-level resource, unset
    attributes left out, keys sorted."""
    names = project.services_enabled if names is None else names
    if project.document is not None:
        raw = project.document
        services = {k: v for k, v in (raw.get("services") or {}).items() if k in names}
        out: dict = {k: raw[k] for k in TOP_ORDER if raw.get(k)}
        out["name"], out["services"] = project.name, services
        out.update({k: v for k, v in raw.items() if k.startswith("x-")})
        return _sorted(_order(out))
    stack = project.stack
    out = {"name": project.name, "services": {}}
    for name in sorted(names):
        svc = stack.services[name]
        data = svc.model_dump(mode="json", exclude={"extensions"})
        data = hashing._prune(data, keep_empty=("command", "entrypoint"))
        data.update(svc.extensions)
        out["services"][name] = data
    for kind in TOP_ORDER[2:]:
        table = getattr(stack, kind)
        if table:
            out[kind] = {k: _resource(v) for k, v in table.items()}
    out.update(stack.extensions)
    return _order(_sorted(out))


def _resource(obj) -> dict | None:
    if obj is None:
        return None
    data = hashing._prune(obj.model_dump(mode="json", exclude={"extensions"}))
    data.update(obj.extensions)
    return data


def _sorted(node):
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def _order(out: dict) -> dict:
    first = {k: out[k] for k in TOP_ORDER if k in out}
    first.update({k: v for k, v in out.items() if k not in first})
    return first


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as `|` blocks, no aliases."""

    def ignore_aliases(self, data):
        return True


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1_000_000)


def to_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
