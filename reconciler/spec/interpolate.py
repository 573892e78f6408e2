"""`${VAR}` interpolation as compose-go does it: values only, never keys; `$$` is a literal `$`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from reconciler.spec import errors, yamlload

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class TemplateError(Exception):
    """A bad template or a missing required variable; the caller adds the place."""


def substitute(text: str, lookup: Callable[[str], str | None], unset: list[str]) -> str:
    """Expand every template in `text`; names of unset variables without default go to `unset`."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        i = j + 1
        if i < n and text[i] == "$":
            out.append("$")
            i += 1
            continue
        match = _NAME.match(text, i)
        if match:
            out.append(_value(match.group(), lookup, unset))
            i = match.end()
            continue
        if i < n and text[i] == "{":
            end = _closing_brace(text, i + 1)
            out.append(_braced(text[i + 1:end], lookup, unset))
            i = end + 1
            continue
        out.append("$")  # compose-go's pattern does not match a lone `$`: it stays as written
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "$" and text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if c == "$" and text.startswith("$$", i):
            i += 2
            continue
        if c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise TemplateError(f"invalid template: {text!r} (no closing brace)")


def _value(name: str, lookup, unset: list[str]) -> str:
    value = lookup(name)
    if value is None:
        unset.append(name)
        return ""
    return value


def _braced(body: str, lookup, unset: list[str]) -> str:
    match = _NAME.match(body)
    if not match:
        raise TemplateError(f"invalid template: '${{{body}}}'")
    name, rest = match.group(), body[match.end():]
    if not rest:
        return _value(name, lookup, unset)
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise TemplateError(f"invalid template: '${{{body}}}'")
    arg = rest[len(op):]
    value = lookup(name)
    is_set = value is not None
    has_value = bool(value)
    if op in (":-", "-"):
        use_default = not has_value if op == ":-" else not is_set
        return substitute(arg, lookup, unset) if use_default else value
    if op in (":?", "?"):
        missing = not has_value if op == ":?" else not is_set
        if missing:
            message = substitute(arg, lookup, [])
            suffix = f": {message}" if message else ""
            raise TemplateError(f"required variable {name} is missing a value{suffix}")
        return value
    present = has_value if op == ":+" else is_set
    return substitute(arg, lookup, unset) if present else ""


def interpolate_document(doc: yamlload.Document, environ: Mapping[str, str],
                         warnings: list[errors.Warning]) -> None:
    """Expand every string value of `doc` in place; errors name the place of the value."""
    seen: set[str] = set()

    def walk(node, path):
        if isinstance(node, dict):
            for key, val in node.items():
                node[key] = walk(val, path + (key,))
            return node
        if isinstance(node, list):
            for i, val in enumerate(node):
                node[i] = walk(val, path + (i,))
            return node
        if isinstance(node, yamlload.Override):
            node.value = walk(node.value, path)
            return node
        if isinstance(node, str) and "$" in node:
            unset: list[str] = []
            try:
                result = substitute(node, environ.get, unset)
            except TemplateError as err:
                raise errors.SpecError(str(err), doc.place(path)) from None
            for name in unset:
                if name not in seen:
                    seen.add(name)
                    warnings.append(errors.Warning(
                        f'the "{name}" variable is not set, defaulting to a blank string',
                        doc.place(path)))
            return result
        return node

    walk(doc.data, ())
