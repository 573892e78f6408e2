"""The Compose merge rules on long-syntax data: `-f a -f b`, `extends`, `include`, `!reset`.

Mappings merge key by key and later wins; `command`, `entrypoint` and `healthcheck.test` are
replaced; ports, volumes, secrets, configs and env files merge on their unique key; other
sequences append without duplicates. `!reset` removes what came before, `!override` replaces.
"""

from __future__ import annotations

import json

from reconciler.spec import yamlload

_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}


def _port_key(item):
    if not isinstance(item, dict):
        return _freeze(item)
    return ("port", item.get("host_ip"), item.get("target"), item.get("published"),
            item.get("protocol", "tcp"))


def _target_key(item):
    if isinstance(item, dict) and "target" in item:
        return ("target", item["target"])
    if isinstance(item, dict) and "source" in item:
        return ("source", item["source"])
    return _freeze(item)


def _path_key(item):
    if isinstance(item, dict) and "path" in item:
        return ("path", item["path"])
    return _freeze(item)


_KEYED = {
    ("ports",): _port_key,
    ("volumes",): _target_key,
    ("secrets",): _target_key,
    ("configs",): _target_key,
    ("build", "secrets"): _target_key,
    ("env_file",): _path_key,
    ("devices",): _target_key,
}


def _freeze(item) -> str:
    try:
        return json.dumps(item, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(item)


def merge_stacks(base: dict, over: dict) -> dict:
    """`over` (a later file) onto `base`; returns the merged dict (base is reused)."""
    for key, val in over.items():
        if key == "services" and isinstance(val, dict) and isinstance(base.get(key), dict):
            services = base[key]
            for name, svc in val.items():
                _merge_entry(services, name, svc, lambda b, o: merge_service(b, o))
        else:
            _merge_entry(base, key, val, lambda b, o: _merge_value(b, o, None))
    return base


def merge_service(base: dict, over: dict) -> dict:
    """One service definition over another (an override file, or a service over what it extends)."""
    for key, val in over.items():
        _merge_entry(base, key, val, lambda b, o, k=key: _merge_value(b, o, (k,)))
    return base


def _merge_entry(target: dict, key, val, merge_fn) -> None:
    if val is yamlload.RESET:
        target.pop(key, None)
    elif isinstance(val, yamlload.Override):
        target[key] = strip_markers(val.value)
    elif key in target and isinstance(target[key], (dict, list)) and type(target[key]) is type(val):
        target[key] = merge_fn(target[key], val)
    elif val is None and isinstance(target.get(key), dict):
        return  # `key:` with nothing under it adds nothing to an existing mapping
    else:
        target[key] = val


def _merge_value(base, over, path: tuple | None):
    if path in _REPLACED:
        return over
    if isinstance(base, dict) and isinstance(over, dict):
        if path == ("logging",) and over.get("driver") not in (None, base.get("driver")):
            return over
        for key, val in over.items():
            sub = None if path is None else path + (key,)
            _merge_entry(base, key, val, lambda b, o, s=sub: _merge_value(b, o, s))
        return base
    if isinstance(base, list) and isinstance(over, list):
        key_fn = _KEYED.get(path) if path is not None else None
        return _merge_list(base, over, key_fn or _freeze)
    return over


def _merge_list(base: list, over: list, key_fn) -> list:
    index: dict[object, int] = {}
    out: list = []
    for item in base + over:
        key = key_fn(item)
        if key in index:
            out[index[key]] = item  # the later definition of the same key wins
        else:
            index[key] = len(out)
            out.append(item)
    return out


def strip_markers(node):
    """Drop `!reset` keys and items that had nothing to reset, unwrap `!override` values."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if v is yamlload.RESET]:
            del node[key]
        for key, val in node.items():
            node[key] = strip_markers(val)
        return node
    if isinstance(node, list):
        return [strip_markers(v) for v in node if v is not yamlload.RESET]
    if isinstance(node, yamlload.Override):
        return strip_markers(node.value)
    return node
