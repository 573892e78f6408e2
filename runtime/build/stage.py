"""A build stage's state, and the metadata instructions (ARG, ENV, LABEL, WORKDIR, CMD...) applied to it."""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from runtime.build import cache, dockerfile, image, words
from runtime.images import changes

DEFAULT_SHELL = ("/bin/sh", "-c")
HISTORY_COMMENT = "buildkit.dockerfile.v0"


class StepError(ValueError):
    """A metadata instruction that cannot be applied; the builder adds its Dockerfile line."""


class Stage:
    """One stage's state while it builds (mutable only inside the build)."""

    def __init__(self, index: int, name: str, source: str, from_inst: dockerfile.Instruction,
                 instructions: list[dockerfile.Instruction]) -> None:
        self.index, self.name, self.source = index, name, source
        self.from_inst, self.instructions = from_inst, instructions
        self.config: dict[str, Any] = {}
        self.layers: tuple[image.LayerRef, ...] = ()
        self.history: list[dict[str, Any]] = []
        self.key = ""
        self.args: dict[str, str] = {}
        self.shell: tuple[str, ...] = DEFAULT_SHELL
        self.cmd_set = False
        self.done = False

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.get("Env") or ():
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def visible(self) -> dict[str, str]:
        """What $NAME expands to here: the stage's ARGs, then its ENV (ENV wins, as docker)."""
        return {**self.args, **self.env()}


def apply(stage: Stage, inst: dockerfile.Instruction, *, escape: str, build_args: Mapping[str, str],
          meta_args: Mapping[str, str]) -> None:
    """A metadata instruction (ARG, ENV, LABEL, WORKDIR, ...) on the stage's config, its cache key
    and its history; StepError when it is wrong."""
    cmd, env, esc = inst.cmd, stage.visible(), escape
    cfg = stage.config
    created_by = inst.original.strip()
    if cmd == "arg":
        shown = []
        for key, default in words.split_args(list(inst.args)):
            if key in build_args:
                value: str | None = build_args[key]
            elif default is not None:
                value = words.expand(default, env, escape=esc)
            else:
                value = meta_args.get(key)
            if value is not None:
                stage.args[key] = value
                env[key] = value
            shown.append(f"{key}={value}" if value is not None else key)
        stage.key = cache.key(stage.key, "ARG", shown)
        return  # docker keeps ARG out of the history
    elif cmd in ("env", "label"):
        pairs = [(words.expand(k, env, escape=esc), words.expand(v, env, escape=esc))
                 for k, v in words.split_key_values(list(inst.args))]
        if cmd == "env":
            current = stage.env()
            for k, v in pairs:
                if not k:
                    raise StepError("ENV names can not be blank")
                current[k] = v
                env[k] = v
            cfg["Env"] = [f"{k}={v}" for k, v in current.items()]
        else:
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(pairs)}
        created_by = f"{cmd.upper()} " + " ".join(f"{k}={v}" for k, v in pairs)
    elif cmd == "workdir":
        path = words.expand(text_of(inst, escape), env, escape=esc)
        joined = posixpath.join(cfg.get("WorkingDir") or "/", path)
        cfg["WorkingDir"] = posixpath.normpath(joined) if joined != "/" else "/"
        created_by = f"WORKDIR {cfg['WorkingDir']}"
    elif cmd == "user":
        cfg["User"] = words.expand(text_of(inst, escape), env, escape=esc)
        created_by = f"USER {cfg['User']}"
    elif cmd == "expose":
        exposed = cfg.get("ExposedPorts") or {}
        for word in words.expand_words(" ".join(inst.args), env, escape=esc):
            exposed.update({p: {} for p in changes.ports(word)})
        cfg["ExposedPorts"] = exposed
    elif cmd == "volume":
        paths = (list(inst.args) if inst.json_form
                 else words.expand_words(" ".join(inst.args), env, escape=esc))
        if not paths or not all(paths):
            raise StepError("VOLUME specified can not be an empty string")
        cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
    elif cmd in ("cmd", "entrypoint"):
        argv = list(inst.args) if inst.json_form else [*stage.shell, text_of(inst, escape)]
        if cmd == "cmd":
            cfg["Cmd"] = argv
            stage.cmd_set = True
        else:
            cfg["Entrypoint"] = argv
            if not stage.cmd_set:
                cfg.pop("Cmd", None)  # docker: a new ENTRYPOINT drops an inherited CMD
        created_by = f"{cmd.upper()} {json.dumps(argv)}"
    elif cmd == "healthcheck":
        cfg["Healthcheck"] = healthcheck(inst)
    elif cmd == "stopsignal":
        cfg["StopSignal"] = changes.signal_name(words.expand(text_of(inst, escape), env, escape=esc))
    elif cmd == "shell":
        if not inst.json_form or not inst.args:
            raise StepError("SHELL requires the arguments to be in JSON form")
        stage.shell = tuple(inst.args)
        cfg["Shell"] = list(inst.args)
    elif cmd == "onbuild":
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), text_of(inst, escape)]
    elif cmd == "maintainer":
        stage.history.append({"created": None, "created_by": created_by, "empty_layer": True})
        return
    else:
        raise StepError(f"unknown instruction: {cmd.upper()}")
    stage.key = cache.key(stage.key, cmd, created_by, sorted(env.items()))
    stage.history.append({"created": None, "created_by": created_by, "comment": HISTORY_COMMENT,
                          "empty_layer": True})


def healthcheck(inst: dockerfile.Instruction) -> dict[str, Any]:
    """HEALTHCHECK as the image config keeps it: Test, durations in nanoseconds, Retries."""
    args = list(inst.args)
    if not args:
        raise StepError("HEALTHCHECK requires NONE or CMD")
    first = args[0].upper()
    if first == "NONE":
        return {"Test": ["NONE"]}
    if first != "CMD" or len(args) < 2:
        raise StepError("HEALTHCHECK: expected NONE or CMD followed by a command")
    rest = args[1:]
    test = ["CMD", *rest] if inst.json_form else ["CMD-SHELL", " ".join(rest)]
    if not inst.json_form and len(rest) == 1 and rest[0].lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            parsed = json.loads(rest[0])
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                test = ["CMD", *parsed]
    check: dict[str, Any] = {"Test": test}
    fields = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
              "start-interval": "StartInterval"}
    for flag in inst.flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name in fields:
            check[fields[name]] = dockerfile.duration_ns(value)
        elif name == "retries":
            check["Retries"] = int(value)
        else:
            raise StepError(f"HEALTHCHECK: unknown flag --{name}")
    return check


def text_of(inst: dockerfile.Instruction, escape: str) -> str:
    """The instruction's arguments as written (continuations joined, flags left out)."""
    if inst.args and len(inst.args) == 1 and not inst.json_form:
        return inst.args[0]
    text = inst.original.split("\n", 1)[0] if inst.heredocs else inst.original
    text = re.sub(re.escape(escape) + r"[ \t]*\r?\n", "", text).strip()
    text = text.split(None, 1)[1] if " " in text or "\t" in text else ""
    for flag in inst.flags:
        text = text.lstrip().removeprefix(flag)
    return text.strip()
