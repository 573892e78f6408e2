"""`.env` and `env_file` files: `KEY=VALUE` lines read as compose-go's dotenv reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.spec import errors, interpolate

_KEY = re.compile(r"\s*(?:export\s+)?([^\s=#]+)\s*(=?)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "\\$"}


def parse_raw(text: str) -> dict[str, str]:
    """`format: raw`: every `KEY=VALUE` line verbatim, no quotes, no interpolation."""
    result = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            result[key.strip()] = value
    return result


def parse(text: str, file: str, lookup: Mapping[str, str] | None = None,
          interpolate_values: bool = True) -> dict[str, str | None]:
    """Variables of one file, in order. A bare `KEY` takes its value from `lookup` (or is None).

    Unquoted and double-quoted values are interpolated with `lookup` and the keys above them;
    single-quoted values are literal.
    """
    lookup = lookup or {}
    result: dict[str, str | None] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY.match(line)
        if not match:
            raise errors.SpecError(f"invalid line {line.strip()!r}", errors.Place(file, i, 1))
        key, has_eq = match.group(1), match.group(2)
        if not has_eq:
            if line[match.end():].strip() and not line[match.end():].strip().startswith("#"):
                raise errors.SpecError(f"invalid line {line.strip()!r}: expected KEY=VALUE",
                                       errors.Place(file, i, 1))
            result[key] = lookup.get(key)
            continue
        raw = line[match.end():].lstrip()
        line_no = i
        if raw[:1] in ("'", '"'):
            quote = raw[0]
            body = raw[1:]
            while _closing_quote(body, quote) < 0 and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            end = _closing_quote(body, quote)
            if end < 0:
                raise errors.SpecError(f"unterminated quoted value for {key}",
                                       errors.Place(file, line_no, 1))
            value = body[:end]
            if quote == "'":
                result[key] = value
                continue
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
        if interpolate_values:
            value = _expand(value, key, file, line_no, lookup, result)
        result[key] = value
    return result


def _closing_quote(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


def _expand(value: str, key: str, file: str, line: int, lookup, earlier: dict) -> str:
    def get(name):
        # The caller's variables (the shell) win, as they win over the file's own values later.
        value = lookup.get(name)
        return value if value is not None else earlier.get(name)

    try:
        return interpolate.substitute(value.replace("\\$", "$$"), get, [])
    except interpolate.TemplateError as err:
        raise errors.SpecError(f"{key}: {err}", errors.Place(file, line, 1)) from None


def read(path: str, lookup: Mapping[str, str] | None = None,
         fmt: str | None = None) -> dict[str, str | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise errors.SpecError("env file not found", errors.Place(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise errors.SpecError(f"cannot read env file: {err}", errors.Place(path)) from None
    nul = text.find("\0")
    if nul >= 0:  # exec and the environment end a string there: what ran would differ
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise errors.SpecError("contains a NUL character", errors.Place(path, line, column))
    if fmt == "raw":
        values: dict[str, str | None] = dict(parse_raw(text))
        return values
    return parse(text, path, lookup)
