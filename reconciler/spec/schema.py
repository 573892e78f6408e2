"""Plain merged data -> the pydantic Stack, with pydantic's complaints turned into SpecErrors."""

from __future__ import annotations

from typing import Any

import pydantic
import pydantic_core

from reconciler.spec import errors, model

_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
}


_STRINGS = "a string or a list of strings"
_LIST_OR_DICT = "a mapping or a list of KEY=VALUE strings"
# Service attributes with a short syntax: a type error names every form the user may write.
_FORMS = {
    ("command",): _STRINGS, ("entrypoint",): _STRINGS, ("healthcheck", "test"): _STRINGS,
    ("dns",): _STRINGS, ("dns_search",): _STRINGS, ("tmpfs",): _STRINGS,
    ("label_file",): _STRINGS, ("environment",): _LIST_OR_DICT, ("labels",): _LIST_OR_DICT,
    ("annotations",): _LIST_OR_DICT, ("sysctls",): _LIST_OR_DICT,
    ("build", "args"): _LIST_OR_DICT, ("build", "labels"): _LIST_OR_DICT,
    ("networks",): "a list of network names or a mapping",
    ("depends_on",): "a list of service names or a mapping",
    ("ports", None): "a number, a string such as 8080:80 or a mapping",
    ("volumes", None): "a string such as ./src:/dst or a mapping",
    ("secrets", None): "a secret name or a mapping", ("configs", None): "a config name or a mapping",
    ("env_file",): "a path, or a list of paths or of {path, required}",
    ("build",): "a context path or a mapping", ("extends",): "a service name or a mapping",
    ("ulimits", None): "a number or {soft, hard}",
    ("extra_hosts",): "a list of HOST:IP strings or a mapping",
}
_TYPE_ERRORS = {"string_type", "list_type", "dict_type", "model_type", "model_attributes_type",
                "int_type", "int_parsing", "float_type", "float_parsing"}


def _forms(path: tuple) -> str | None:
    if len(path) < 3 or path[0] != "services":
        return None
    rel = tuple(None if isinstance(p, int) or (i > 0 and path[2] == "ulimits") else p
                for i, p in enumerate(path[2:]))
    return _FORMS.get(rel)


def build_stack(data: dict, place_of, lenient: bool = False) -> model.Stack:
    """Validate `data` once; the first (deepest) problem becomes the SpecError.

    `lenient` (no interpolation): a `${VAR}` left in a typed field cannot be checked yet, so
    that field is left out of the model; everything else is validated as usual.
    """
    touched: set[int] = set()
    for _ in range(1000):
        try:
            return model.Stack.model_validate(data)
        except pydantic.ValidationError as exc:
            if not (lenient and _drop_templates(exc, data, touched)):
                raise to_spec_error(exc, data, place_of) from None
    raise errors.SpecError("too many uninterpolated values")


def _drop_templates(exc: pydantic.ValidationError, data: dict, touched: set[int]) -> bool:
    """Remove one value the error is about if it is an uninterpolated template (or an object
    that lost a required key that way); False if the error is a real one."""
    for err in exc.errors():
        loc = err["loc"]
        if err["type"] == "missing":
            loc = loc[:-1]
        chain: list[tuple[Any, Any, Any]] = [(None, None, data)]  # (parent, key, node) down the loc
        for part in loc:
            node = chain[-1][2]
            if _has(node, part):
                chain.append((node, part, node[part]))
        parent, key, node = chain[-1]
        if parent is None:
            continue
        if err["type"] == "missing":
            if id(node) not in touched:
                continue
        elif not _is_template(node):
            continue
        touched.add(id(parent))
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
        return True  # positions shift after a removal; validate again
    return False


def _has(node: object, part: str | int) -> bool:
    """Whether the document's `node` has `part`: a key of a mapping, an index of a list."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _is_template(node) -> bool:
    if isinstance(node, str):
        return "$" in node
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return any(isinstance(v, str) and "$" in v for v in values)


def to_spec_error(exc: pydantic.ValidationError, data: dict, place_of) -> errors.SpecError:
    candidates = [_translate(err, data) for err in exc.errors()]
    # A union reports one error per member; the member that got furthest says the most.
    path, message = max(candidates, key=lambda c: len(c[0]))
    if message.startswith("additional property"):
        # Point at the unknown key's line, name the object it does not belong to.
        place = place_of(path)
        return errors.SpecError(message, errors.Place(place.file, place.line, place.column, path[:-1]))
    return errors.SpecError(message, place_of(path))


def _translate(err: pydantic_core.ErrorDetails, data: dict) -> tuple[tuple, str]:
    loc, kind = err["loc"], err["type"]
    path: list[str | int] = []
    node: Any = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            name = path[-1] if path else "?"
            return tuple(path), f"{name!r} is not a valid name (letters, digits, '.', '_', '-')"
        if _has(node, part):
            path.append(part)
            node = node[part]
        elif last and kind in ("missing", "extra_forbidden"):
            break
        # else: a union member's tag (e.g. 'list[str]'), not part of the document
    if kind == "extra_forbidden":
        key = loc[-1]
        return tuple(path) if path and path[-1] == key else tuple(path) + (key,), \
            f"additional property {key!r} is not allowed"
    if kind == "missing":
        return tuple(path), f"{loc[-1]!r} is required"
    if kind == "literal_error":
        return tuple(path), f"must be one of {err['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        return tuple(path), f"{node!r} does not match {err['ctx']['pattern']}"
    if kind in _TYPE_ERRORS and _forms(tuple(path)):
        return tuple(path), f"must be {_forms(tuple(path))}"
    if kind in _MESSAGES:
        if loc and "environment" in loc and kind == "string_type":
            return tuple(path), "must be a boolean, null, number or string"
        return tuple(path), _MESSAGES[kind]
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return tuple(path), message[:1].lower() + message[1:]
