"""Dockerfile instructions applied to an image config, as `docker import --change` takes them."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import signal

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
PROTOCOLS = ("tcp", "udp", "sctp")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(\w+))?")


class ChangeError(ValueError):
    """A --change that is not a Dockerfile instruction pcompose can apply; says which and why."""


@dataclasses.dataclass(frozen=True)
class Change:
    instruction: str  # upper case, one of ALLOWED
    args: str         # the rest of the line, as written


def parse(text: str) -> Change:
    """`CMD ["httpd", "-f"]` -> Change("CMD", '["httpd", "-f"]'); refuses other instructions."""
    word, _, rest = text.strip().partition(" ")
    instruction, rest = word.upper(), rest.strip()
    if not word:
        raise ChangeError("empty --change")
    if instruction not in ALLOWED:
        raise ChangeError(f"{word} is not a valid change command (one of {', '.join(ALLOWED)})")
    if not rest:
        raise ChangeError(f"{instruction} requires at least one argument")
    return Change(instruction, rest)


def apply(config: dict, changes: list[Change] | tuple[Change, ...]) -> dict:
    """A copy of `config` (an image config's `config` object: Cmd, Env, ...) with the changes applied
    in order; later ones see the variables earlier ENVs set, as in a Dockerfile."""
    out = json.loads(json.dumps(config))
    cmd_set = False
    for change in changes:
        args, env = change.args, _env_of(out)
        if change.instruction in ("CMD", "ENTRYPOINT"):
            key = "Cmd" if change.instruction == "CMD" else "Entrypoint"
            out[key] = _command(args)
            if key == "Cmd":
                cmd_set = True
            elif not cmd_set:
                out.pop("Cmd", None)  # as docker: a new ENTRYPOINT drops a CMD not set beside it
        elif change.instruction == "ENV":
            for name, value in _pairs(args, env, "ENV"):
                if not name:
                    raise ChangeError(f"ENV {args}: a variable needs a name")
                env[name] = value
                out["Env"] = [f"{k}={v}" for k, v in env.items()]
        elif change.instruction == "LABEL":
            labels = out.get("Labels") or {}
            for name, value in _pairs(args, env, "LABEL"):
                if not name:
                    raise ChangeError(f"LABEL {args}: a label needs a name")
                labels[name] = value
            out["Labels"] = labels
        elif change.instruction == "EXPOSE":
            exposed = out.get("ExposedPorts") or {}
            for word in split(args):
                exposed.update({port: {} for port in ports(expand(word, env))})
            out["ExposedPorts"] = exposed
        elif change.instruction == "VOLUME":
            volumes = out.get("Volumes") or {}
            for path in _json_list(args) or [expand(w, env) for w in split(args)]:
                if not path:
                    raise ChangeError(f"VOLUME {args}: an empty path")
                volumes[path] = {}
            out["Volumes"] = volumes
        elif change.instruction == "WORKDIR":
            # a relative WORKDIR is below the one before, as in a Dockerfile
            path = posixpath.join(out.get("WorkingDir") or "/", _nonempty(expand(args, env), "WORKDIR", args))
            out["WorkingDir"] = "/" + posixpath.normpath(path).lstrip("/")
        elif change.instruction == "USER":
            out["User"] = _nonempty(expand(args, env), "USER", args)
        elif change.instruction == "STOPSIGNAL":
            out["StopSignal"] = signal_name(_nonempty(expand(args, env), "STOPSIGNAL", args))
    return out


def _env_of(config: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config.get("Env") or ():
        name, _, value = item.partition("=")
        env[name] = value
    return env


def _nonempty(value: str, instruction: str, args: str) -> str:
    if not value:
        raise ChangeError(f"{instruction} {args}: expands to nothing")
    return value


def _json_list(args: str) -> list[str] | None:
    """The JSON form (`["a", "b"]`), or None when args are not one: then they are the shell form."""
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _command(args: str) -> list[str]:
    """JSON form as written; shell form runs under /bin/sh -c, as in a Dockerfile (no expansion here:
    the shell does it when the container starts)."""
    found = _json_list(args)
    return found if found is not None else ["/bin/sh", "-c", args]


def _pairs(args: str, env: dict[str, str], instruction: str) -> list[tuple[str, str]]:
    """`a=b c="d e"` -> [(a, b), (c, d e)]; the old form `a b c` -> [(a, "b c")]."""
    words = split(args)
    if "=" not in words[0]:
        name, value = (re.split(r"\s+", args, maxsplit=1) + [""])[:2]
        if not value.strip():
            raise ChangeError(f"{instruction} {args}: needs a value (NAME=VALUE or NAME VALUE)")
        return [(expand(name, env), expand(value.strip(), env))]
    out = []
    for word in words:
        if "=" not in word:
            raise ChangeError(
                f"{instruction} {args}: can't find = in {word!r}; must be of the form name=value")
        name, _, value = word.partition("=")
        out.append((expand(name, env), expand(value, env)))
    return out


def ports(word: str) -> list[str]:
    """`80-82/udp` -> 80/udp, 81/udp, 82/udp (tcp when no protocol is given)."""
    found = _PORT.fullmatch(word)
    proto = (found[3] or "tcp").lower() if found else ""
    if not found or proto not in PROTOCOLS:
        raise ChangeError(f"EXPOSE {word}: expected PORT[-PORT][/tcp|udp|sctp]")
    first, last = int(found[1]), int(found[2] or found[1])
    if not 0 < first <= last <= 65535:
        raise ChangeError(f"EXPOSE {word}: ports are 1 to 65535, low to high")
    return [f"{port}/{proto}" for port in range(first, last + 1)]


def signal_name(text: str) -> str:
    """Kept as written (docker does), once it names a signal: SIGTERM, TERM, 15, SIGRTMIN+3."""
    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        known = int(name) in {s.value for s in signal.Signals}
    else:
        known = ("SIG" + name in signal.Signals.__members__
                 or bool(re.fullmatch(r"RTM(IN|AX)([+-]\d+)?", name)))
    if not known:
        raise ChangeError(f"STOPSIGNAL {text}: unknown signal")
    return text


def split(text: str) -> list[str]:
    """Words at unquoted blanks, quotes and backslashes kept (the Dockerfile parser's first pass)."""
    words, word, quote, i = [], "", "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote != "'" and i + 1 < len(text):
            word += text[i:i + 2]
            i += 2
            continue
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if word:
                words.append(word)
            word = ""
            i += 1
            continue
        word += ch
        i += 1
    if quote:
        raise ChangeError(f"unmatched {quote} in {text!r}")
    return words + [word] if word else words


def expand(word: str, env: dict[str, str]) -> str:
    """One word as a Dockerfile's shell lexer reads it: quotes removed, backslash escapes, and
    $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:+alt}, ${NAME+alt} replaced."""
    return _Lexer(word, env).word(0, stop="")[0]


class _Lexer:
    def __init__(self, text: str, env: dict[str, str]) -> None:
        self.text, self.env = text, env

    def word(self, i: int, stop: str) -> tuple[str, int]:
        """Read from i up to an unquoted `stop` character (or the end); returns (value, index of stop)."""
        text, out = self.text, []
        while i < len(text) and text[i] != stop:
            ch = text[i]
            if ch == "\\":
                out.append(text[i + 1:i + 2])
                i += 2
            elif ch == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise ChangeError(f"unmatched ' in {text!r}")
                out.append(text[i + 1:end])
                i = end + 1
            elif ch == '"':
                value, i = self._double(i + 1)
                out.append(value)
            elif ch == "$":
                value, i = self._variable(i + 1)
                out.append(value)
            else:
                out.append(ch)
                i += 1
        if stop and i >= len(text):
            raise ChangeError(f"missing {stop!r} in {text!r}")
        return "".join(out), i

    def _double(self, i: int) -> tuple[str, int]:
        text, out = self.text, []
        while i < len(text) and text[i] != '"':
            ch = text[i]
            if ch == "\\" and text[i + 1:i + 2] in ('"', "$", "\\"):
                out.append(text[i + 1])
                i += 2
            elif ch == "$":
                value, i = self._variable(i + 1)
                out.append(value)
            else:
                out.append(ch)
                i += 1
        if i >= len(text):
            raise ChangeError(f'unmatched " in {text!r}')
        return "".join(out), i + 1

    def _variable(self, i: int) -> tuple[str, int]:
        """After a `$`: the value of the variable named there, and where reading goes on."""
        text = self.text
        if text[i:i + 1] != "{":
            found = _NAME.match(text, i)
            if not found:
                return "$", i  # a lone $ stands for itself
            return self.env.get(found[0], ""), found.end()
        found = _NAME.match(text, i + 1)
        if not found:
            raise ChangeError(f"bad substitution in {text!r}")
        name, i = found[0], found.end()
        if i >= len(text):
            raise ChangeError(f"missing '}}' in {text!r}")
        if text[i] == "}":
            return self.env.get(name, ""), i + 1
        for op in (":-", ":+", "-", "+"):
            if text.startswith(op, i):
                alt, end = self.word(i + len(op), stop="}")
                is_set = name in self.env and (bool(self.env[name]) or not op.startswith(":"))
                if op.endswith("-"):
                    return (self.env[name] if is_set else alt), end + 1
                return (alt if is_set else ""), end + 1
        raise ChangeError(f"unsupported substitution in {text!r} (only ${{NAME}}, :-, -, :+ and +)")
