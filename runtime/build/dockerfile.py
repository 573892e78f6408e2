"""Dockerfiles read with BuildKit's own parser and checked as BuildKit checks each instruction.

The `dockerfile` package wraps BuildKit's Go parser, so continuations, comments inside them,
the escape directive, JSON forms, heredoc bodies, BOM and CRLF mean what they mean to docker.
It neither expands words (runtime/build/words.py does) nor knows the instructions: this module
refuses unknown instructions, unknown or malformed flags and wrong argument counts with the
file and line, and recovers what the package drops (a heredoc's `<<-` and quoted delimiter,
an ONBUILD trigger's flags and heredocs).

What `Instruction.args` holds, by instruction (all raw: quotes, escapes and `$` as written):
- RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK CMD: the JSON strings when `json_form`, else one
  string, the command line (HEALTHCHECK: its first arg is `CMD` or `NONE`).
- ENV, LABEL: one `KEY=VALUE` per pair (the legacy `ENV K V V2` form too): give them to
  `words.split_key_values`, then `words.expand` each key and value.
- ARG: the words as written (`NAME` or `NAME=default`): `words.split_args`.
- ONBUILD: one string, the trigger instruction as docker stores it in the image config.
- Others (FROM, COPY, ADD, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER): the words.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

import dockerfile as go_parser  # a compiled module, no stubs (pyproject: its calls are Any)

from runtime.build import words

# flag kinds as BuildKit's BFlags: a bool may stand alone, a string needs `=`, strings repeat
_BOOL, _STRING, _STRINGS = "bool", "string", "strings"
_COPY_FLAGS = {"chown": _STRING, "chmod": _STRING, "link": _BOOL, "exclude": _STRINGS,
               "parents": _BOOL}
_FLAGS: dict[str, dict[str, str]] = {
    "from": {"platform": _STRING},
    "run": {"mount": _STRINGS, "network": _STRING, "security": _STRING},
    "copy": {**_COPY_FLAGS, "from": _STRING},
    "add": {**_COPY_FLAGS, "checksum": _STRING, "keep-git-dir": _BOOL},
    "healthcheck": {"interval": _STRING, "timeout": _STRING, "start-period": _STRING,
                    "start-interval": _STRING, "retries": _STRING},
}
INSTRUCTIONS = frozenset({
    "from", "run", "cmd", "label", "maintainer", "expose", "env", "add", "copy", "entrypoint",
    "volume", "user", "workdir", "arg", "onbuild", "stopsignal", "healthcheck", "shell"})
_NETWORKS = ("default", "none", "host")
_SECURITY = ("sandbox", "insecure")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


class DockerfileError(Exception):
    """A Dockerfile that BuildKit would refuse: `Dockerfile:12: unknown instruction: RUNN`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line  # 0 when the error is the file's as a whole
        self.message = message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


@dataclasses.dataclass(frozen=True)
class Heredoc:
    """A here-document: `content` is its body with the tabs `<<-` strips already stripped;
    `expand` is False when the delimiter was quoted (`<<'EOF'`): no `$` expansion then."""

    name: str
    content: str
    chomp: bool
    expand: bool


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction: `cmd` lower-case, `line`..`end_line` where it stands (1-based),
    `flags` as written (`--from=build`), `args` raw (see the module's docstring)."""

    cmd: str
    line: int
    end_line: int
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json_form: bool
    heredocs: tuple[Heredoc, ...]
    original: str

    def flag(self, name: str) -> str | None:
        """The last value of `--name` (`"true"` for a bool given alone), None if not given."""
        values = self.flag_values(name)
        return values[-1] if values else None

    def flag_values(self, name: str) -> tuple[str, ...]:
        """Every value of a repeatable flag (`--mount`, `--exclude`), in order."""
        out = []
        for flag in self.flags:
            key, sep, value = flag[2:].partition("=")
            if key == name:
                out.append(value if sep else "true")
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A whole Dockerfile: its escape token (`\\` or `` ` ``) and its instructions in order."""

    escape: str
    instructions: tuple[Instruction, ...]


def parse(text: str, name: str = "Dockerfile") -> Parsed:
    """The instructions of `text`, checked; DockerfileError naming `name` and the line if not."""
    escape = _escape_directive(text)
    commands = _go_parse(text, name)
    lines = _lines(text)
    instructions = tuple(_instruction(c, escape, lines, name) for c in commands)
    in_stage = False
    for instr in instructions:
        if instr.cmd == "from":
            in_stage = True
        elif instr.cmd != "arg" and not in_stage:
            raise DockerfileError(name, instr.line, "no build stage in current context")
    if not in_stage:
        raise DockerfileError(name, 0, "no build stage in current context: the file has no FROM")
    return Parsed(escape=escape, instructions=instructions)


def duration_ns(text: str) -> int:
    """A Go duration (`1m30s`, `500ms`, `0`) in nanoseconds, as HEALTHCHECK's flags take it."""
    if text in ("0", "+0", "-0"):
        return 0
    body = text[1:] if text[:1] in "+-" else text
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return -int(total) if text.startswith("-") else int(total)


def _escape_directive(text: str) -> str:
    """The `# escape=` directive's token: directives are the comment lines at the very top,
    up to the first line that is not one (BuildKit's directive parser)."""
    escape = "\\"
    for line in _lines(text):
        match = _DIRECTIVE.match(line.lstrip(" \t"))
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    return escape


def _lines(text: str) -> list[str]:
    """The lines as the parser numbers them: only LF (or CRLF) ends one."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")


def _go_parse(text: str, name: str) -> tuple[Any, ...]:
    try:
        return tuple(go_parser.parse_string(text))
    except go_parser.GoParseError as err:
        raise DockerfileError(name, _error_line(text, str(err)), str(err)) from None


def _error_line(text: str, message: str) -> int:
    """The parser names no line: the first prefix of the file that fails the same way does."""
    if message == "file with no instructions":
        return 0
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    for count in range(1, len(lines) + 1):
        try:
            go_parser.parse_string("".join(lines[:count]))
        except go_parser.GoParseError as err:
            if str(err) == message:
                return count
    return 0


def _instruction(command: Any, escape: str, lines: list[str], name: str) -> Instruction:
    cmd = command.cmd.lower()
    line = command.start_line
    if cmd not in INSTRUCTIONS:
        guess = difflib.get_close_matches(cmd, sorted(INSTRUCTIONS), n=1)
        hint = f" (did you mean {guess[0].upper()}?)" if guess else ""
        raise DockerfileError(name, line, f"unknown instruction: {command.cmd}{hint}")
    flags = tuple(command.flags)
    args = tuple(command.value)
    heredocs: tuple[Heredoc, ...] = ()
    try:
        if cmd == "onbuild":
            args = (_onbuild_trigger(command, escape, lines, name),)
        elif cmd in ("env", "label"):
            args = tuple(f"{args[i]}={args[i + 1]}" for i in range(0, len(args) - 1, 2))
        if command.heredocs:
            heredocs = _heredocs(command, escape)
        instr = Instruction(cmd=cmd, line=line, end_line=command.end_line, flags=flags, args=args,
                            json_form=bool(command.json), heredocs=heredocs,
                            original=command.original)
        _check(instr)
    except (ValueError, words.WordError) as err:
        raise DockerfileError(name, line, str(err)) from None
    return instr


def _heredocs(command: Any, escape: str) -> tuple[Heredoc, ...]:
    """The package's heredocs with what it drops put back: `<<-` (chomp) and a quoted
    delimiter (no expansion), read from the markers on the instruction's line."""
    markers: dict[str, tuple[bool, bool]] = {}
    for word in words.split_raw(" ".join(command.value), escape=escape):
        match = _HEREDOC.match(word)
        if not match or not match.group(3):
            continue
        quoted = any(q in match.group(3) for q in "'\"")
        marker_name = words.expand(match.group(3), {}, escape=escape)
        markers.setdefault(marker_name, (match.group(2) == "-", not quoted))
    out = []
    for doc in command.heredocs:
        chomp, expand = markers.get(doc.name, (False, True))
        content = _LEADING_TABS.sub("", doc.content) if chomp else doc.content
        out.append(Heredoc(name=doc.name, content=content, chomp=chomp, expand=expand))
    return tuple(out)


def _onbuild_trigger(command: Any, escape: str, lines: list[str], name: str) -> str:
    """The trigger as docker records it (`RUN echo hi`), checked as an instruction of its own:
    the package keeps neither the trigger's flags nor its heredoc bodies."""
    multiline = command.end_line > command.start_line and "<<" in command.original
    if multiline:
        source = "\n".join(lines[command.start_line - 1:command.end_line]) + "\n"
    else:
        source = command.original
    trigger = re.sub(r"(?i)^\s*ONBUILD\s*", "", source)
    if not trigger.strip():
        raise ValueError("ONBUILD requires at least one argument")
    sub = (command.sub_cmd or trigger.split(None, 1)[0]).upper()
    if sub == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if sub in ("MAINTAINER", "FROM"):
        raise ValueError(f"{sub} isn't allowed as an ONBUILD trigger")
    prefix = f"# escape={escape}\n" if escape != "\\" else ""
    try:
        (parsed,) = go_parser.parse_string(prefix + trigger)
    except (go_parser.GoParseError, ValueError) as err:
        raise ValueError(f"ONBUILD trigger: {err}") from None
    try:
        _instruction(parsed, escape, [], name)
    except DockerfileError as err:
        raise ValueError(f"ONBUILD trigger: {err.message}") from None
    return trigger.rstrip("\n") if multiline else trigger


def _check(instr: Instruction) -> None:
    """BuildKit's checks of one instruction (frontend/dockerfile/instructions/parse.go)."""
    _check_flags(instr)
    cmd, args, upper = instr.cmd, instr.args, instr.cmd.upper()
    if cmd in ("env", "label", "expose", "volume", "arg", "onbuild", "healthcheck", "run") and not args:
        raise ValueError(f"{upper} requires at least one argument")
    if cmd in ("maintainer", "workdir", "user", "stopsignal") and len(args) != 1:
        raise ValueError(f"{upper} requires exactly one argument")
    if cmd in ("copy", "add"):
        if len(args) < 2:
            raise ValueError(f"{upper} requires at least two arguments, but only one was provided. "
                             "Destination could not be determined")
        if _HEREDOC.match(args[-1]) and instr.heredocs:
            raise ValueError(f"{upper} cannot accept a heredoc as a destination")
    elif cmd == "from":
        if len(args) == 3 and args[1].lower() == "as":
            if not _STAGE_NAME.match(args[2].lower()):
                raise ValueError(f"invalid name for build stage: {args[2]!r}, name can't start "
                                 "with a number or contain symbols")
        elif len(args) != 1:
            raise ValueError("FROM requires either one or three arguments")
    elif cmd in ("env", "label"):
        for pair in args:
            if pair.startswith("="):
                raise ValueError(f"{upper} names can not be blank")
    elif cmd == "arg":
        words.split_args(args)
    elif cmd == "volume":
        if any(not v.strip() for v in args):
            raise ValueError("VOLUME specified can not be an empty string")
    elif cmd == "shell":
        if not args:
            raise ValueError("SHELL requires at least one argument")
        if not instr.json_form:
            raise ValueError(f"SHELL requires the arguments to be in JSON form: {instr.original}")
    elif cmd == "healthcheck":
        _check_healthcheck(instr)
    elif cmd == "run":
        network, security = instr.flag("network"), instr.flag("security")
        if network is not None and network not in _NETWORKS:
            raise ValueError(f"unsupported network mode {network!r}: one of {', '.join(_NETWORKS)}")
        if security is not None and security not in _SECURITY:
            raise ValueError(f"unsupported security mode {security!r}: one of {', '.join(_SECURITY)}")


def _check_flags(instr: Instruction) -> None:
    known = _FLAGS.get(instr.cmd, {})
    seen: set[str] = set()
    for flag in instr.flags:
        if not flag.startswith("--"):
            raise ValueError(f"Arg should start with -- : {flag}")
        if flag == "--":
            return
        key, sep, value = flag[2:].partition("=")
        kind = known.get(key)
        if kind is None:
            raise ValueError(f"Unknown flag: {key}")
        if key in seen and kind != _STRINGS:
            raise ValueError(f"Duplicate flag specified: {key}")
        seen.add(key)
        if kind == _BOOL:
            if sep and not value:
                raise ValueError(f"Missing a value on flag: {key}")
            if value.lower() not in ("", "true", "false"):
                raise ValueError(f"Expecting boolean value for flag {key}, not: {value}")
        elif not sep:
            raise ValueError(f"Missing a value on flag: {key}")


def _check_healthcheck(instr: Instruction) -> None:
    kind = instr.args[0].upper()
    if kind == "NONE":
        if len(instr.args) > 1:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return
    if kind != "CMD":
        raise ValueError(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    if len(instr.args) < 2 or (not instr.json_form and not instr.args[1].strip()):
        raise ValueError("Missing command after HEALTHCHECK CMD")
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        value = instr.flag(flag)
        if value:
            ns = duration_ns(value)
            if 0 < ns < 1_000_000 or ns < 0:
                raise ValueError(f"Interval {flag!r} cannot be less than 1ms")
    retries = instr.flag("retries")
    if retries:
        if not re.fullmatch(r"[+-]?\d+", retries):
            raise ValueError(f"strconv.ParseInt: parsing {retries!r}: invalid syntax")
        if int(retries) < 0:
            raise ValueError(f"--retries cannot be negative ({int(retries)})")
