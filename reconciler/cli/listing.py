"""What the engine's object verbs (network, volume) share with docker's: its tabwriter, --filter,
--format (table, json, {{.Field}}), key=value flags, Go's time formats and the prune prompt."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from reconciler.cli import common

# docker's formatter: tabwriter.NewWriter(out, minwidth 10, tabwidth 1, padding 3, ' ', 0)
MIN_WIDTH = 10
PADDING = 3


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Cells padded to the widest of their column plus three, ten at least; the last column as
    it is (a tabwriter pads only cells a tab ends)."""
    lines = [headers, *rows]
    widths = [max(MIN_WIDTH, max(len(r[i]) for r in lines) + PADDING)
              for i in range(len(headers) - 1)]
    out = ["".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[-1] for row in lines]
    return "".join(line.rstrip() + "\n" for line in out)


def parse_filters(texts: list[str], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """`--filter key=value` flags by key, as docker's daemon checks them."""
    found: dict[str, list[str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise common.UserFacingError(f"bad format of filter (expected name=value): {text}")
        key = key.strip().lower()
        if key not in allowed:
            raise common.UserFacingError(f"invalid filter '{key}'")
        found.setdefault(key, []).append(value)
    return found


def labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Every `key` or `key=value` of `wanted` is on the object (docker ANDs label filters)."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def labels_exclude(labels: dict[str, str], unwanted: list[str]) -> bool:
    """`label!=key` / `label!=key=value`: true when none of them is on the object."""
    return not any(labels_match(labels, [item]) for item in unwanted)


def pattern_match(text: str, patterns: list[str]) -> bool:
    """docker's name filter: a regular expression found anywhere in the name (any of them)."""
    for pattern in patterns:
        try:
            if re.search(pattern, text):
                return True
        except re.error:
            if pattern in text:
                return True
    return False


def as_bool(key: str, values: list[str]) -> bool:
    """A filter such as dangling=true: docker takes true/1 and false/0."""
    last = values[-1].lower()
    if last not in ("true", "1", "false", "0"):
        raise common.UserFacingError(f"invalid filter '{key}={values[-1]}'")
    return last in ("true", "1")


def key_values(texts: list[str]) -> dict[str, str]:
    """`--label k=v` / `--opt k=v` flags; a bare `k` is k with an empty value, as docker takes it."""
    out = {}
    for text in texts:
        key, _, value = text.partition("=")
        if not key:
            raise common.UserFacingError(f"invalid argument {text!r}: expected KEY=VALUE")
        out[key] = value
    return out


def labels_text(labels: dict[str, str]) -> str:
    """Labels as docker's list formats show them: k=v,k2=v2 (sorted here, for stable output)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def natural_key(name: str) -> list:
    """docker sorts names naturally: net2 before net10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# -- --format: Go templates as docker runs them on its objects, without control structures
# ({{if}}, {{range}}): fields, (parenthesised) pipelines and docker's functions.
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""(?P<space>\s+)|(?P<field>(?:\.[A-Za-z0-9_-]+)+|\.)
                        |(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<number>-?\d+)
                        |(?P<name>[A-Za-z_]\w*)|(?P<punct>[()|])""", re.X)


def _go_text(value) -> str:
    """A value as Go's templates print it: `[a b]`, `map[k:v]`, true, <no value>."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    return str(value)


def _go_json(value) -> str:
    """docker's `json` function: Go's encoding, compact and with no HTML escapes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _index(value, *keys):
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, "")  # a missing key of a map: its zero value
        elif isinstance(value, (list, tuple)) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            raise ValueError(f"error calling index: cannot index {_go_text(value)} with {key!r}")
    return value


# docker's template functions (templates.basicFunctions) and Go's builtins that need no `if`.
_FUNCTIONS: dict[str, Callable[..., object]] = {
    "json": _go_json, "index": _index, "len": len,
    "join": lambda items, sep: sep.join(_go_text(i) for i in items or ()),
    "split": lambda text, sep: text.split(sep),
    "lower": lambda text: text.lower(), "upper": lambda text: text.upper(),
    "title": lambda text: " ".join(w[:1].upper() + w[1:] for w in text.split(" ")),
    "truncate": lambda text, n: text[:n],
    "print": lambda *values: "".join(_go_text(v) for v in values),
    "println": lambda *values: " ".join(_go_text(v) for v in values) + "\n",
}
_CONSTANTS = {"true": True, "false": False, "nil": None}


class _Action:
    """One {{...}} evaluated against `obj`: pipeline := command (| command)*."""

    def __init__(self, source: str, obj) -> None:
        self.source, self.obj = source, obj
        self.tokens: list[tuple[str, str, bool]] = []  # (kind, text, space before it)
        space = False
        for match in _TOKEN.finditer(source):
            kind = match.lastgroup or ""  # every alternative of _TOKEN is a named group
            if kind == "space":
                space = True
                continue
            self.tokens.append((kind, match.group(), space))
            space = False
        if sum(len(m.group()) for m in _TOKEN.finditer(source)) != len(source):
            self.fail("unexpected character")
        self.at = 0

    def fail(self, why: str) -> NoReturn:
        raise common.UserFacingError(f"template: {{{{{self.source}}}}}: {why}")

    def peek(self) -> tuple[str, str, bool] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def value(self):
        out = self.pipeline()
        if (extra := self.peek()) is not None:
            self.fail(f"unexpected {extra[1]!r}")
        return out

    def pipeline(self):
        out = self.command(piped=False)
        while (token := self.peek()) and token[1] == "|":
            self.at += 1
            out = self.command(piped=True, value=out)
        return out

    def command(self, piped: bool, value=None):
        head = self.peek()
        if head is None or head[1] in ("|", ")"):
            self.fail("missing value for command")
        if head[0] == "name" and head[1] not in _CONSTANTS:
            self.at += 1
            function = _FUNCTIONS.get(head[1])
            if function is None:
                self.fail(f'function "{head[1]}" not defined')
            args = []
            while (token := self.peek()) and token[1] not in ("|", ")"):
                args.append(self.operand())
            try:
                return function(*args, *([value] if piped else []))
            except (TypeError, ValueError, AttributeError) as err:
                self.fail(f"error calling {head[1]}: {err}")
        if piped:
            self.fail(f"can't give argument to non-function {head[1]}")
        out = self.operand()
        if (token := self.peek()) and token[1] not in ("|", ")"):
            self.fail(f"can't give argument to non-function {head[1]}")
        return out

    def operand(self):
        kind, text, _ = self.tokens[self.at]
        self.at += 1
        if kind == "field":
            return self.field(self.obj, text)
        if kind == "string":
            return json.loads(text) if text[0] == '"' else text[1:-1]
        if kind == "number":
            return int(text)
        if kind == "name" and text in _CONSTANTS:
            return _CONSTANTS[text]
        if text != "(":
            self.fail(f"unexpected {text!r}")
        out = self.pipeline()
        if not self.peek() or self.peek()[1] != ")":
            self.fail("unclosed left paren")
        self.at += 1
        after = self.peek()
        if after and after[0] == "field" and not after[2] and after[1] != ".":
            self.at += 1  # (index .X "y").Field: the field of what the parens gave
            out = self.field(out, after[1])
        return out

    def field(self, value, path: str):
        for part in filter(None, path.split(".")):
            if not isinstance(value, dict) or part not in value:
                self.fail(f"can't evaluate field {part}")
            value = value[part]
        return value


def template(text: str, obj: dict) -> str:
    """A Go template of docker's list and inspect verbs: `{{.Name}}`, `{{.IPAM.Driver}}`,
    `{{json .Labels}}`, `{{json .}}`, `{{index .Config.Labels "k"}}`,
    `{{(index .NetworkSettings.Networks "n").IPAddress}}`, `{{join .Args " "}}`, `{{.Name |
    upper}}`, `{{- ...}}` trimming; `\\t` and `\\n` as in docker."""
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    out, at, trim = [], 0, False
    for match in _ACTION.finditer(text):
        before = text[at:match.start()]
        before = before.lstrip() if trim else before
        out.append(before.rstrip() if match.group(1) else before)
        out.append(_go_text(_Action(match.group(2).strip(), obj).value()))
        at, trim = match.end(), bool(match.group(3))
    rest = text[at:]
    out.append(rest.lstrip() if trim else rest)
    return "".join(out)


def write_list(fmt: str, rows: list[dict], headers: list[tuple[str, str]]) -> None:
    """Print a listing: `table` (the given (key, HEADER) columns), `json` (one object per line,
    docker's keys in their alphabetical order) or a template per row."""
    if fmt == "table":
        out = table([h for _, h in headers], [[str(r[k]) for k, _ in headers] for r in rows])
    elif fmt == "json":
        out = "".join(json.dumps(dict(sorted(r.items())), ensure_ascii=False, separators=(",", ":"))
                      + "\n" for r in rows)
    elif fmt.startswith("table "):
        raise common.UserFacingError("--format 'table TEMPLATE' is not supported; "
                                     "use table, json or a template without 'table'")
    else:
        out = "".join(template(fmt, r) + "\n" for r in rows)
    sys.stdout.write(out)


def write_inspect(fmt: str | None, objects: list[dict]) -> None:
    """`inspect`: a JSON array indented by four spaces, or a template per object."""
    if fmt in (None, "", "json"):
        sys.stdout.write(json.dumps(objects, indent=4, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("".join(template(fmt, o) + "\n" for o in objects))


# -- Go's time formats, in this machine's zone as docker's daemon shows them
def _local(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).astimezone()


def _fraction(ns: int) -> str:
    digits = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f".{digits}" if digits else ""


def _offset(when: dt.datetime, colon: bool) -> str:
    text = when.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if colon else text


def go_string(ns: int) -> str:
    """time.Time.String(): `2024-05-02 12:21:53.123456789 +0000 UTC`."""
    when = _local(ns)
    return (f"{when:%Y-%m-%d %H:%M:%S}{_fraction(ns)} {_offset(when, False)} "
            f"{when.tzname() or _offset(when, False)}")


def rfc3339(ns: int, nano: bool = False) -> str:
    """RFC 3339 as Go writes it (`Z` for UTC); `nano`: with the fraction of a second."""
    when = _local(ns)
    zone = "Z" if when.utcoffset() == dt.timedelta(0) else _offset(when, True)
    return f"{when:%Y-%m-%dT%H:%M:%S}{_fraction(ns) if nano else ''}{zone}"


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def until_ns(value: str) -> int:
    """The `until` filter: a Go duration back from now (`24h`, `1h30m`), a Unix timestamp or
    an RFC 3339 date/time; the time in nanoseconds."""
    import time

    text = value.strip()
    if text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _SECONDS[u] for n, u in _DURATION.findall(text))
        return time.time_ns() - int(seconds * 1e9)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1e9)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise common.UserFacingError(f"invalid filter 'until={value}': expected a duration "
                                     "(24h), a Unix timestamp or an RFC 3339 time") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1e9)


def human_size(n: float) -> str:
    """go-units' HumanSize: four significant digits, decimal units (`0B`, `1.5kB`, `12.3MB`)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def confirm(warning: str) -> bool:
    """docker's prompt before a prune; anything but y/yes (or no input at all) is no."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
