"""The `load(...)` entry: discovery, .env, project name, include, extends, profiles -> Project."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from reconciler.spec import (
    envfile,
    errors,
    features,
    hashing,
    interpolate,
    merge,
    model,
    normalize,
    runnable,
    schema,
    unique,
    validate,
    yamlload,
)

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = {"compose.yaml": ("compose.override.yaml", "compose.override.yml"),
                  "compose.yml": ("compose.override.yml", "compose.override.yaml"),
                  "docker-compose.yml": ("docker-compose.override.yml", "docker-compose.override.yaml"),
                  "docker-compose.yaml": ("docker-compose.override.yaml", "docker-compose.override.yml")}
_PROJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclasses.dataclass
class Project:
    """A loaded stack and what was learned while loading it."""

    name: str
    working_dir: str
    config_files: tuple[str, ...]
    stack: model.Stack  # every service; `services_enabled` says which ones the profiles select
    services_enabled: tuple[str, ...]
    profiles: tuple[str, ...]
    environ: Mapping[str, str]
    warnings: list[errors.Warning]
    # Without interpolation: the normalized data as written, `${VAR}` kept (for `config`).
    document: dict | None = None
    _hashes: dict = dataclasses.field(default_factory=dict, repr=False)

    def config_hash(self, service_name: str) -> str:
        """sha256 of the normalized service, without what must not cause a recreate (limits
        `runc update` applies in place among them): what `config --hash` prints and the
        container is labelled with."""
        if service_name not in self._hashes:
            svc = self.stack.services[service_name]
            self._hashes[service_name] = hashing.config_hash(svc, self.stack, self.environ)
        return self._hashes[service_name]

    @property
    def services(self) -> dict[str, model.Service]:
        """The enabled services (what `up` runs), by name."""
        return {name: self.stack.services[name] for name in self.services_enabled}

    def with_dependencies(self, names) -> list[str]:
        """`names` and every service they depend on, directly or not, sorted."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen or name not in self.stack.services:
                continue
            seen.add(name)
            todo.extend(self.stack.services[name].depends_on)
        return sorted(seen)

    def all_profiles(self) -> list[str]:
        return sorted({p for svc in self.stack.services.values() for p in svc.profiles})


class _Places:
    """Finds the file, line and column of a path in whichever loaded document wrote it."""

    def __init__(self) -> None:
        self.docs: list[yamlload.Document] = []

    def __call__(self, path: tuple) -> errors.Place:
        best, best_depth = None, -1
        for doc in reversed(self.docs):
            for cut in range(len(path), -1, -1):
                if path[:cut] in doc.positions:
                    if cut > best_depth:
                        best, best_depth = doc, cut
                    break
        if best is None:
            file = self.docs[0].file if self.docs else None
            return errors.Place(file, None, None, path)
        return best.place(path)


def normalize_project_name(name: str) -> str:
    """docker compose's NormalizeProjectName: lowercase, [a-z0-9_-] only, no leading _ or -."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def discover(directory: str) -> list[str]:
    """compose.yaml & co. in `directory` or its parents, plus the matching override file."""
    here = Path(directory).resolve()
    for folder in (here, *here.parents):
        for candidate in DEFAULT_FILES:
            if (folder / candidate).is_file():
                files = [str(folder / candidate)]
                for override in OVERRIDE_FILES[candidate]:
                    if (folder / override).is_file():
                        files.append(str(folder / override))
                        break
                return files
    raise errors.SpecError(f"no configuration file provided: not found "
                           f"({', '.join(DEFAULT_FILES)} in {here} or its parents)")


def load(files=None, *, project_name: str | None = None, profiles=(), env_files=(),
         project_directory=None, environ: Mapping[str, str] | None = None,
         cwd: str | None = None, interpolate: bool = True, consistency: bool = True) -> Project:
    """Read, interpolate, merge, normalize and check a stack; raise SpecError if it is wrong.

    Relative paths given here are relative to `cwd` (the caller's working directory: the
    agent loads stacks for CLIs that run elsewhere), by default this process's."""
    shell = dict(os.environ if environ is None else environ)
    cwd = cwd or os.getcwd()
    if not files and shell.get("COMPOSE_FILE"):
        files = shell["COMPOSE_FILE"].split(os.pathsep)
    start = _absolute(project_directory, cwd) if project_directory else cwd
    config_files = [_absolute(f, cwd) for f in files] if files else discover(start)
    working_dir = _absolute(project_directory, cwd) if project_directory \
        else os.path.dirname(config_files[0])
    env = _environment(shell, working_dir, env_files, cwd)
    warnings: list[errors.Warning] = []
    places = _Places()
    loader = _Loader(env, interpolate, places, warnings, shell.get("HOME"))
    docs = loader.read_files(config_files, interpolate_now=False)
    name = _project_name(project_name, env, docs, working_dir, interpolate)
    # Files may use ${COMPOSE_PROJECT_NAME}: known only now, so interpolate after naming.
    env.setdefault("COMPOSE_PROJECT_NAME", name)
    for doc in docs:
        if interpolate:
            interpolate_document(doc, env, warnings)
        unique.check(doc)
    data = loader.build(docs, working_dir, chain=())
    data = merge.strip_markers(data)
    data.pop("version", None)
    data.pop("include", None)
    data["name"] = name
    normalize.complete(data, name, env, places, working_dir)
    runnable.check_strings(data, places)
    document = merge.strip_markers(_clone(data)) if not interpolate else None
    stack = schema.build_stack(data, places, lenient=not interpolate)
    active = _profiles(profiles, env)
    enabled = tuple(sorted(n for n, s in stack.services.items()
                           if not s.profiles or "*" in active or set(s.profiles) & set(active)))
    if consistency and interpolate:
        warnings.extend(validate.check(stack, enabled, places))
        warnings.extend(runnable.check(project_name=name, stack=stack, enabled=enabled,
                                       place_of=places))
    warnings.extend(features.warnings_for(stack, enabled, places))
    return Project(name=name, working_dir=working_dir, config_files=tuple(config_files),
                   stack=stack, services_enabled=enabled, profiles=tuple(active),
                   environ=env, warnings=warnings, document=document)


interpolate_document = interpolate.interpolate_document


def _absolute(path, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, os.fspath(path)))


def _environment(shell: dict, working_dir: str, env_files, cwd: str) -> dict:
    """Variables for interpolation: the shell wins over `.env` / `--env-file`."""
    env: dict = {}
    if not env_files and shell.get("COMPOSE_ENV_FILES"):
        env_files = shell["COMPOSE_ENV_FILES"].split(",")
    paths = [_absolute(p, cwd) for p in env_files] if env_files else []
    if not paths and os.path.isfile(os.path.join(working_dir, ".env")):
        paths = [os.path.join(working_dir, ".env")]
    for path in paths:
        values = envfile.read(path, {**env, **shell})
        env.update({k: v for k, v in values.items() if v is not None})
    env.update(shell)
    return env


def _profiles(given, env) -> list[str]:
    if given:
        return list(given)
    return [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]


def _project_name(explicit, env, docs, working_dir, do_interpolate) -> str:
    for source, value in (("-p", explicit), ("COMPOSE_PROJECT_NAME", env.get("COMPOSE_PROJECT_NAME"))):
        if value:
            if not _PROJECT_NAME_RE.match(value):
                raise errors.SpecError(
                    f'invalid project name "{value}" (from {source}): must consist only of '
                    "lowercase alphanumeric characters, hyphens, and underscores as well as "
                    "start with a letter or number")
            return value
    for doc in reversed(docs):
        value = doc.data.get("name")
        if isinstance(value, str) and value:
            if do_interpolate:
                try:
                    value = interpolate.substitute(value, env.get, [])
                except interpolate.TemplateError as err:
                    raise errors.SpecError(str(err), doc.place(("name",))) from None
            normalized = normalize_project_name(value)
            if normalized:
                return normalized
    normalized = normalize_project_name(os.path.basename(working_dir.rstrip("/")))
    if not normalized:
        raise errors.SpecError("project name must not be empty")
    return normalized


class _Loader:
    """Reads documents and resolves include and extends, recording every document for places."""

    def __init__(self, env, do_interpolate, places, warnings, home) -> None:
        self.env, self.do_interpolate = env, do_interpolate
        self.places, self.warnings, self.home = places, warnings, home
        self.cache: dict[str, list[yamlload.Document]] = {}

    def read_files(self, paths, env=None, interpolate_now=True) -> list[yamlload.Document]:
        """Parse `paths`; with `interpolate_now`, each document is also interpolated and its
        unique lists checked (else the caller does both once it knows the project name)."""
        docs = []
        for path in paths:
            for doc in yamlload.load_file(path):
                self.places.docs.append(doc)
                if "version" in doc.data:
                    self.warnings.append(errors.Warning(
                        'the attribute "version" is obsolete, it will be ignored',
                        doc.place(("version",))))
                if interpolate_now:
                    if self.do_interpolate:
                        interpolate.interpolate_document(doc, env or self.env, self.warnings)
                    unique.check(doc)
                docs.append(doc)
        return docs

    def build(self, docs, base_dir: str, chain: tuple) -> dict:
        """Merge `docs` in order, each with its includes and extends resolved."""
        result: dict = {}
        for doc in docs:
            data = doc.data
            if not isinstance(data.get("services", {}), (dict, type(None))):
                raise errors.SpecError("services must be a mapping", doc.place(("services",)))
            included = self._includes(doc, chain)
            normalize.canonical_file(data, base_dir, self.home, not self.do_interpolate, doc.place,
                                     self.warnings, doc.positions)
            self._extends(doc, data, chain)
            if included is not None:
                self._warn_overlaps(doc, included, data)
                data = merge.merge_stacks(included, data)
            result = merge.merge_stacks(result, data)
        return result

    def _warn_overlaps(self, doc, included: dict, data: dict) -> None:
        """compose-go lets the including file win on a name clash; the spec asks to say so."""
        for kind in ("services", *normalize.RESOURCE_KINDS):
            ours, theirs = data.get(kind), included.get(kind)
            if isinstance(ours, dict) and isinstance(theirs, dict):
                for name in sorted(set(ours) & set(theirs)):
                    self.warnings.append(errors.Warning(
                        "also defined by an included file; this definition is merged over it",
                        doc.place((kind, name))))

    def _includes(self, doc: yamlload.Document, chain: tuple) -> dict | None:
        entries = doc.data.pop("include", None)
        if entries is None:
            return None
        if not isinstance(entries, list):
            raise errors.SpecError("include must be a list", doc.place(("include",)))
        here = os.path.dirname(doc.file)
        merged: dict = {}
        for i, entry in enumerate(entries):
            place = doc.place(("include", i))
            paths, env_files, project_dir = _include_entry(entry, place)
            paths = [os.path.normpath(os.path.join(here, p)) for p in paths]
            for p in paths:
                if p in chain or p == doc.file:
                    raise errors.SpecError(
                        "include cycle detected: " + " -> ".join(chain + (doc.file, p)), place)
            project_dir = os.path.normpath(os.path.join(here, project_dir or os.path.dirname(paths[0])))
            env_files = [os.path.join(here, f) for f in env_files]
            sub_env = _environment(dict(self.env), project_dir, env_files, here)
            sub = _Loader(sub_env, self.do_interpolate, self.places, self.warnings, self.home)
            sub.cache = self.cache
            sub_docs = sub.read_files(paths, sub_env)
            merged = merge.merge_stacks(merged, sub.build(sub_docs, project_dir, chain + (doc.file,)))
        return merged

    def _extends(self, doc: yamlload.Document, data: dict, chain: tuple) -> None:
        services = data.get("services")
        if not isinstance(services, dict):
            return
        done: set[str] = set()
        for name in list(services):
            self._resolve(doc, services, name, (), done)

    def _resolve(self, doc, services: dict, name: str, visiting: tuple, done: set) -> object:
        svc = services.get(name)
        path = ("services", name, "extends")
        if name in visiting:
            raise errors.SpecError("extends cycle detected: " + " -> ".join(visiting + (name,)),
                                   doc.place(path))
        if name in done or not isinstance(svc, dict) or "extends" not in svc:
            return svc
        ext = svc.pop("extends")
        if not isinstance(ext, dict) or not isinstance(ext.get("service"), str) \
                or set(ext) - {"service", "file"}:
            raise errors.SpecError("extends must be a service name or {service, file}", doc.place(path))
        target = ext["service"]
        base: object
        if "file" in ext and isinstance(ext["file"], str):
            other = os.path.normpath(os.path.join(os.path.dirname(doc.file), ext["file"]))
            base = self._service_from_file(other, target, doc.place(path))
        else:
            if target not in services:
                raise errors.SpecError(f'cannot extend service "{name}": service "{target}" not found',
                                       doc.place(path))
            base = self._resolve(doc, services, target, visiting + (name,), done)
            if not isinstance(base, dict):
                raise errors.SpecError(f'service "{target}" must be a mapping',
                                       doc.place(("services", target)))
        merged = merge.merge_service(_clone(base), svc)
        services[name] = merged
        done.add(name)
        return merged

    def _service_from_file(self, path: str, name: str, place) -> dict:
        if path not in self.cache:
            docs = self.read_files([path])
            for d in docs:
                normalize.canonical_file(d.data, os.path.dirname(path), self.home,
                                         not self.do_interpolate, d.place, self.warnings,
                                         d.positions)
            self.cache[path] = docs
        for doc in reversed(self.cache[path]):
            services = doc.data.get("services")
            if isinstance(services, dict) and name in services:
                found = self._resolve(doc, services, name, (), set())
                if not isinstance(found, dict):
                    raise errors.SpecError(f'service "{name}" must be a mapping',
                                           doc.place(("services", name)))
                return found
        raise errors.SpecError(f'cannot extend: service "{name}" not found in {path}', place)


def _include_entry(entry, place) -> tuple[list[str], list[str], str | None]:
    """An `include` item (a path, or {path, env_file, project_directory}) -> its three parts."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or set(entry) - {"path", "env_file", "project_directory"}:
        raise errors.SpecError("an include is a path or {path, env_file, project_directory}", place)
    paths = normalize.ss.string_or_list(entry.get("path"))
    env_files = normalize.ss.string_or_list(entry.get("env_file")) or []
    project_dir = entry.get("project_directory")
    if not paths or not _strings(paths) or not _strings(env_files) or \
            not isinstance(project_dir, (str, type(None))):
        raise errors.SpecError("include path, env_file and project_directory must be strings "
                               "(path at least one)", place)
    return paths, env_files, project_dir


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _clone(node):
    """A copy of plain YAML data, much faster than copy.deepcopy."""
    if isinstance(node, dict):
        return {k: _clone(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_clone(v) for v in node]
    if isinstance(node, yamlload.Override):
        return yamlload.Override(_clone(node.value))
    return node
