"""The Compose schema's `uniqueItems`: a list it marks so must not hold the same item twice.

Checked on each document as written, once interpolated (compose-go validates the schema after
interpolation), before short syntax is rewritten and before files merge (the merge itself
drops items an override file repeats). `UNIQUE` is the schema's list of such places;
tests/unit/spec/test_refusals.py derives it from compose-spec.json and compares.
"""

from __future__ import annotations

from reconciler.spec import errors, yamlload

ANY = "*"    # any key of a mapping
ITEM = "[]"  # every item of a list

UNIQUE = (
    "configs.*.labels",
    "include.[].env_file",
    "include.[].path",
    "networks.*.labels",
    "secrets.*.labels",
    "services.*.annotations",
    "services.*.build.additional_contexts",
    "services.*.build.args",
    "services.*.build.extra_hosts",
    "services.*.build.labels",
    "services.*.build.ssh",
    "services.*.cap_add",
    "services.*.cap_drop",
    "services.*.depends_on",
    "services.*.deploy.labels",
    "services.*.deploy.resources.reservations.devices.[].capabilities",
    "services.*.deploy.resources.reservations.devices.[].device_ids",
    "services.*.deploy.resources.reservations.devices.[].options",
    "services.*.develop.watch.[].exec.environment",
    "services.*.develop.watch.[].ignore",
    "services.*.develop.watch.[].include",
    "services.*.device_cgroup_rules",
    "services.*.dns",
    "services.*.dns_opt",
    "services.*.dns_search",
    "services.*.environment",
    "services.*.expose",
    "services.*.external_links",
    "services.*.extra_hosts",
    "services.*.gpus.[].capabilities",
    "services.*.gpus.[].device_ids",
    "services.*.gpus.[].options",
    "services.*.group_add",
    "services.*.labels",
    "services.*.links",
    "services.*.models",
    "services.*.networks",
    "services.*.networks.*.aliases",
    "services.*.networks.*.link_local_ips",
    "services.*.ports",
    "services.*.post_start.[].environment",
    "services.*.pre_stop.[].environment",
    "services.*.profiles",
    "services.*.security_opt",
    "services.*.sysctls",
    "services.*.tmpfs",
    "services.*.volumes",
    "services.*.volumes.[].volume.labels",
    "services.*.volumes_from",
    "volumes.*.labels",
)

_END = None  # the trie's marker: the list at this place must be unique


def _trie(patterns) -> dict:
    root: dict = {}
    for pattern in patterns:
        node = root
        for part in pattern.split("."):
            node = node.setdefault(part, {})
        node[_END] = True
    return root


_TRIE = _trie(UNIQUE)


def check(doc: yamlload.Document) -> None:
    """Raise SpecError at the first repeated item of a list the schema says is unique."""
    _walk(doc.data, _TRIE, (), doc)


def _walk(node, trie: dict, path: tuple, doc: yamlload.Document) -> None:
    if isinstance(node, yamlload.Override):
        node = node.value
    if isinstance(node, list):
        if _END in trie:
            _unique(node, path, doc)
        below = trie.get(ITEM)
        if below:
            for i, item in enumerate(node):
                _walk(item, below, path + (i,), doc)
    elif isinstance(node, dict):
        every = trie.get(ANY)
        for key, value in node.items():
            if not isinstance(value, (list, dict, yamlload.Override)):
                continue
            below = trie.get(key)
            if below:
                _walk(value, below, path + (key,), doc)
            if every:
                _walk(value, every, path + (key,), doc)


def _unique(items: list, path: tuple, doc: yamlload.Document) -> None:
    if all(type(item) is str for item in items) and len(set(items)) == len(items):
        return  # the common case, settled without building a key per item
    first: dict = {}
    for j, item in enumerate(items):
        if item is yamlload.RESET:
            continue
        key = _json_key(item)
        i = first.setdefault(key, j)
        if i != j:
            place = doc.place(path + (j,))
            raise errors.SpecError(f"array items[{i},{j}] must be unique",
                                   errors.Place(place.file, place.line, place.column, path))


def _json_key(value):
    """A hashable form under which two items are equal exactly when JSON Schema says so:
    1 and 1.0 are, true and 1 are not, mappings compare without order."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(_json_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _json_key(v)) for k, v in value.items()))
    if isinstance(value, yamlload.Override):
        return _json_key(value.value)
    if value is None:
        return ("null",)
    return ("other", repr(value))
