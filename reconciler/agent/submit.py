"""From a user's stack files to what the agent stores for an `up`.

The agent loads the stack itself, with the calling user's working directory and environment:
the CLI then needs neither the loader nor its model, and starts in tens of milliseconds. The
same functions make the submission of a stack the CLI loaded itself (`up --watch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import spec


@dataclass(frozen=True)
class LoadRequest:
    """The global options of a stack verb, and where and with what environment it ran."""

    cwd: str
    environ: tuple[tuple[str, str], ...]
    files: tuple[str, ...] = ()
    project_name: str | None = None
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    project_directory: str | None = None

    @classmethod
    def from_json(cls, data: object) -> LoadRequest:
        """Checked field by field; ValueError names the one that is wrong."""
        if not isinstance(data, dict):
            raise ValueError("load: expected a JSON object")
        unknown = sorted(set(data) - {"cwd", "environ", "files", "project_name", "profiles",
                                      "env_files", "project_directory"})
        if unknown:
            raise ValueError(f"load: unknown key(s) {', '.join(unknown)}")
        cwd = data.get("cwd")
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise ValueError("load.cwd: expected an absolute path")
        environ = data.get("environ", {})
        if not isinstance(environ, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
            raise ValueError("load.environ: expected a mapping of strings")
        return cls(cwd=cwd, environ=tuple(sorted(environ.items())),
                   files=_strings(data, "files"), project_name=_optional(data, "project_name"),
                   profiles=_strings(data, "profiles"), env_files=_strings(data, "env_files"),
                   project_directory=_optional(data, "project_directory"))

    def to_json(self) -> dict:
        return {"cwd": self.cwd, "environ": dict(self.environ), "files": list(self.files),
                "project_name": self.project_name, "profiles": list(self.profiles),
                "env_files": list(self.env_files), "project_directory": self.project_directory}


def _strings(data: dict, key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"load.{key}: expected a list of strings")
    return tuple(value)


def _optional(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"load.{key}: expected a string")
    return value or None


def load(request: LoadRequest) -> spec.Project:
    """The stack as the user's own shell would load it; spec.SpecError if it is wrong."""
    return spec.load(list(request.files) or None, project_name=request.project_name,
                     profiles=request.profiles, env_files=request.env_files,
                     project_directory=request.project_directory,
                     environ=dict(request.environ), cwd=request.cwd)


@dataclass(frozen=True)
class UpOptions:
    """The flags of `up` that change what the agent decides."""

    services: tuple[str, ...] = ()
    scale: tuple[str, ...] = ()  # SERVICE=NUM, as typed
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    no_start: bool = False  # `create`: make what is missing, start nothing
    no_deps: bool = False  # `scale --no-deps`: the named services only, not what they need
    keep_stopped: bool = False  # `scale`: what is stopped stays stopped
    timeout: float | None = None  # -t: the grace period of what this `up` stops to recreate

    @classmethod
    def from_json(cls, data: object) -> UpOptions:
        if not isinstance(data, dict):
            raise ValueError("options: expected a JSON object")
        unknown = sorted(set(data) - {"services", "scale", "force_recreate", "no_recreate",
                                      "remove_orphans", "timeout", *_VERB_FLAGS})
        if unknown:
            raise ValueError(f"options: unknown key(s) {', '.join(unknown)}")
        flags = {}
        for key in ("force_recreate", "no_recreate", "remove_orphans", *_VERB_FLAGS):
            if not isinstance(data.get(key, False), bool):
                raise ValueError(f"options.{key}: expected true or false")
            flags[key] = data.get(key, False)
        lists = {}
        for key in ("services", "scale"):
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"options.{key}: expected a list of strings")
            lists[key] = tuple(value)
        timeout = data.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or timeout < 0):
            raise ValueError("options.timeout: expected a number of seconds")
        return cls(services=lists["services"], scale=lists["scale"], timeout=timeout, **flags)

    def to_json(self) -> dict:
        return {"services": list(self.services), "scale": list(self.scale),
                "force_recreate": self.force_recreate, "no_recreate": self.no_recreate,
                "remove_orphans": self.remove_orphans, "timeout": self.timeout,
                **{key: getattr(self, key) for key in _VERB_FLAGS}}


# Flags of the verbs that submit as `up` does: create, scale.
_VERB_FLAGS = ("no_start", "no_deps", "keep_stopped")


class Refused(ValueError):
    """The stack loaded but this `up` cannot run it (an unknown service, a bad --scale)."""


def _check_services(project: spec.Project, names) -> None:
    for name in names:
        if name not in project.stack.services:
            raise Refused(f"no such service: {name}")


def _scale(project: spec.Project, texts) -> dict[str, int]:
    out = {}
    for text in texts:
        service, _, number = text.partition("=")
        if not number.isdigit():
            raise Refused(f"--scale {text}: expected SERVICE=NUM")
        _check_services(project, [service])
        out[service] = int(number)
    return out


def wanted(project: spec.Project, options: UpOptions) -> list[str]:
    """The services this `up` runs: the named ones and their dependencies, else all enabled."""
    _check_services(project, options.services)
    if options.services and options.no_deps:
        return list(dict.fromkeys(options.services))
    return project.with_dependencies(list(options.services)) if options.services \
        else list(project.services_enabled)


def submission(project: spec.Project, options: UpOptions,
               previous: dict[str, str] | None = None,
               previous_scale: dict[str, int] | None = None,
               previous_removed: tuple[str, ...] = ()) -> dict:
    """The PUT body of this `up`: the normalized stack, where it came from, the flags that
    change decisions and the hashes of the services to run. `up SERVICE...` (and `create`,
    `scale` of services) leaves the others as they were wanted before (`previous`: the
    stored hashes, with their --scale and the replicas `rm` took), as docker compose leaves
    them alone. Refused when the options do not fit the stack."""
    if options.force_recreate and options.no_recreate:
        raise Refused("--force-recreate and --no-recreate are incompatible")
    names = wanted(project, options)
    stack = project.stack
    hashes = {name: project.config_hash(name) for name in names}  # as desired.hashes
    scale, removed = _scale(project, options.scale), []
    if options.services and previous:
        hashes = {name: h for name, h in previous.items()
                  if name in stack.services and name not in hashes} | hashes
        scale = {name: n for name, n in (previous_scale or {}).items()
                 if name in stack.services and name not in options.services} | scale
        removed = [r for r in previous_removed if r.split(":")[1] not in names]
    diff_options = {"force_recreate": options.force_recreate,
                    "no_recreate": options.no_recreate,
                    "remove_orphans": options.remove_orphans,
                    "scale": scale, "removed": removed, "no_start": options.no_start,
                    "start_stopped": not (options.no_start or options.keep_stopped),
                    "stop_timeout": options.timeout}
    return {"stack": stack.model_dump(mode="json", by_alias=True, exclude_none=True),
            "config_files": list(project.config_files), "working_dir": project.working_dir,
            "options": diff_options, "hashes": dict(sorted(hashes.items()))}
