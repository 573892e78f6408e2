"""A Dockerfile build: stages in order of need, each step cached or run in a snapshot, the image stored."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from runtime.build import (
    cache as cache_mod,
    context as context_mod,
    dockerfile,
    files,
    ignore,
    image,
    snapshot,
    stage as stage_mod,
    words,
)
from runtime.images import manifest, reference, store as store_mod, unpack
from runtime.oci import model as oci_model, users

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]
# docker's build args that need no ARG (proxies): never reported as not consumed
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
PREDEFINED_ARGS = frozenset(_PROXIES) | frozenset(name.lower() for name in _PROXIES)
Pull = Callable[[str], None]  # makes an image present in the store (the agent pulls it)

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(Exception):
    """A build that failed; the message names the Dockerfile line and why. Nothing was tagged."""


@dataclasses.dataclass(frozen=True)
class Request:
    """One image to build, as compose's `build:` and `pcompose build` say it."""
    context: Path
    dockerfile: str = "Dockerfile"
    dockerfile_inline: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    target: str = ""
    tags: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    no_cache: bool = False
    pull: bool = False
    # name -> a directory, or docker-image://REF for an image (compose's service:NAME arrives so)
    additional_contexts: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()  # id -> host file
    network: str = "default"
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int = oci_model.DEFAULT_SHM_SIZE


@dataclasses.dataclass(frozen=True)
class Result:
    image_id: str
    tags: tuple[str, ...]
    cached_steps: int
    run_steps: int


def build(where: snapshot.Where, request: Request, progress: Progress, pull: Pull | None = None, *,
          step: Callable[[], int] | None = None, label: str = "") -> Result:
    """Build `request` into the store and tag it; BuildError (tagging nothing) on any failure.
    `step` numbers the progress steps (shared by builds that run at once), `label` names this
    build in them (`#4 [web build 2/3] RUN ...`, as docker compose shows a service's steps)."""
    # The store's shared lock for the whole build, as a pull holds it: a collection waits
    # rather than take the blobs and layers made here before the image names them.
    with where.store.shared():
        return _Build(where, request, progress, pull, step, label).run()


class _Build:
    def __init__(self, where: snapshot.Where, request: Request, progress: Progress, pull: Pull | None,
                 step: Callable[[], int] | None, label: str) -> None:
        self.where, self.request, self.progress, self.pull = where, request, progress, pull
        self.next_step = step or self._count
        self.label = f"{label} " if label else ""
        self.store: store_mod.Store = where.store
        self.cache = cache_mod.Cache(self.store, enabled=not request.no_cache)
        self.step = 0
        self.cached = self.ran = 0
        self.escape = "\\"
        self.meta_args: dict[str, str] = {}
        self.stages: list[stage_mod.Stage] = []
        self.contexts: dict[str, context_mod.Context] = {}
        self.bases: dict[str, image.Base] = {}  # by reference: each image resolved (or pulled) once
        self.build_args = dict(request.args)
        self.name = "Dockerfile"

    # -- the whole build
    def run(self) -> Result:
        text, name = self._dockerfile()
        try:
            parsed = dockerfile.parse(text, name)
        except dockerfile.DockerfileError as err:
            raise BuildError(str(err)) from None
        self.escape = parsed.escape
        self.name = name
        self._split(parsed.instructions)
        target = self._target()
        needed = self._needed(target)
        declared = set(self.meta_args) | {
            key for stage in needed for inst in stage.instructions if inst.cmd == "arg"
            for key, _ in words.split_args(list(inst.args))}
        unused = sorted(set(self.build_args) - declared - PREDEFINED_ARGS)
        if unused:
            self.progress(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        try:
            for stage in needed:
                self._build_stage(stage)
        except (words.WordError, context_mod.ContextError, files.CopyError, snapshot.SnapshotError,
                store_mod.StoreError, users.UserError, manifest.ManifestError,
                reference.ReferenceError) as err:
            raise BuildError(str(err)) from None
        config = dict(target.config)
        if self.request.labels:
            config["Labels"] = {**(config.get("Labels") or {}), **dict(self.request.labels)}
        n = self._begin(f"[{self.label.strip()}] exporting to image" if self.label else "exporting to image")
        began = time.monotonic()
        # The same steps give the same image (the same id), as BuildKit's do: the time of this
        # build's history is the one recorded when this very image was first made.
        identity = cache_mod.key(target.key, "image", config, target.history,
                                 [layer.diff_id for layer in target.layers])
        created = self.cache.created(identity)
        history = [{**h, "created": created} if h.get("created", "") is None else h for h in target.history]
        image_id = image.write(self.store, config, target.layers, history, self.request.tags, created=created)
        self.progress(f"#{n} writing image {image_id}")
        for tag in self.request.tags:
            self.progress(f"#{n} naming to {reference.parse(tag)}")
        self._done(n, began)
        return Result(image_id, self.request.tags, self.cached, self.ran)

    def _dockerfile(self) -> tuple[str, str]:
        req = self.request
        if not req.context.is_dir():
            raise BuildError(f"build context {req.context}: not a directory")
        if req.dockerfile_inline is not None:
            return req.dockerfile_inline, "Dockerfile"
        path = req.context / req.dockerfile if not os.path.isabs(req.dockerfile) else Path(req.dockerfile)
        try:
            return path.read_text(), req.dockerfile
        except OSError as err:
            raise BuildError(f"Dockerfile {path}: {err.strerror}") from None

    def _split(self, instructions: tuple[dockerfile.Instruction, ...]) -> None:
        plat = manifest.host()
        self.meta_args = {"BUILDPLATFORM": str(plat), "TARGETPLATFORM": str(plat), "TARGETOS": plat.os,
                          "TARGETARCH": plat.architecture, "TARGETVARIANT": plat.variant,
                          "BUILDOS": plat.os, "BUILDARCH": plat.architecture}
        current: stage_mod.Stage | None = None
        for inst in instructions:
            if inst.cmd == "from":
                if not inst.args:
                    raise self._error(inst, "FROM requires an image")
                env = self.meta_args
                source = words.expand(inst.args[0], env, escape=self.escape)
                name = ""
                if len(inst.args) >= 3 and inst.args[1].lower() == "as":
                    name = words.expand(inst.args[2], env, escape=self.escape).lower()
                elif len(inst.args) != 1:
                    raise self._error(inst, "FROM takes an image and optionally AS name")
                if name and any(s.name == name for s in self.stages):
                    raise self._error(inst, f"duplicate stage name {name!r}")
                current = stage_mod.Stage(len(self.stages), name, source, inst, [])
                self.stages.append(current)
            elif current is None:
                if inst.cmd != "arg":
                    raise self._error(inst, "no build stage in current context: FROM must come first")
                for key, default in words.split_args(list(inst.args)):
                    if key in self.build_args:
                        self.meta_args[key] = self.build_args[key]
                    elif default is not None:
                        self.meta_args[key] = words.expand(default, self.meta_args, escape=self.escape)
            else:
                current.instructions.append(inst)
        if not self.stages:
            raise BuildError(f"{self.name}: no FROM instruction: the file defines no build stage")

    def _target(self) -> stage_mod.Stage:
        if not self.request.target:
            return self.stages[-1]
        for stage in self.stages:
            if stage.name == self.request.target.lower():
                return stage
        raise BuildError(f"target stage {self.request.target!r} could not be found")

    def _stage_ref(self, text: str) -> stage_mod.Stage | None:
        for stage in self.stages:
            if stage.name and stage.name == text.lower():
                return stage
        if text.isdigit() and int(text) < len(self.stages):
            return self.stages[int(text)]
        return None

    def _needed(self, target: stage_mod.Stage) -> list[stage_mod.Stage]:
        """The stages `target` depends on (FROM, COPY --from, RUN --mount from=), in file order."""
        seen: set[int] = set()

        def visit(stage: stage_mod.Stage) -> None:
            if stage.index in seen:
                return
            seen.add(stage.index)
            for dep in self._deps(stage):
                if dep.index >= stage.index and dep.index != stage.index:
                    raise self._error(stage.from_inst, f"stage {dep.label} is used before it is defined")
                if dep.index != stage.index:
                    visit(dep)

        visit(target)
        return [s for s in self.stages if s.index in seen]

    def _deps(self, stage: stage_mod.Stage) -> Iterator[stage_mod.Stage]:
        found = self._stage_ref(stage.source)
        if found is not None and found.index < stage.index:
            yield found
        for inst in stage.instructions:
            for flag in inst.flags:
                name, _, value = flag.lstrip("-").partition("=")
                refs = []
                if name == "from" and inst.cmd in ("copy", "add"):
                    refs.append(words.expand(value, self.meta_args, escape=self.escape))
                elif name == "mount":
                    opts = _mount_options(value)
                    if "from" in opts:
                        refs.append(opts["from"])
                for ref in refs:
                    dep = self._stage_ref(ref)
                    if dep is not None:
                        if dep.index >= stage.index:
                            raise self._error(inst, f"stage {ref!r} is not defined before this one")
                        yield dep

    # -- progress
    def _count(self) -> int:
        self.step += 1
        return self.step

    def _begin(self, text: str) -> int:
        n = self.next_step()
        self.progress(f"#{n} {text}")
        return n

    def _done(self, n: int, began: float) -> None:
        self.progress(f"#{n} DONE {time.monotonic() - began:.1f}s")

    def _error(self, inst: dockerfile.Instruction, message: str) -> BuildError:
        return BuildError(f"{self.name}:{inst.line}: {message}")

    def _failed(self, inst: dockerfile.Instruction | None, message: str) -> BuildError:
        return self._error(inst, message) if inst is not None else BuildError(message)

    # -- one stage
    def _build_stage(self, stage: stage_mod.Stage) -> None:
        began = time.monotonic()
        # the base's ONBUILD triggers are steps of this stage, run first (docker's rule): its
        # step count is known once the base is
        triggers = self._start(stage)
        steps = [*triggers, *stage.instructions]
        total = 1 + sum(1 for i in steps if i.cmd in ("run", "copy", "add"))
        position = 1
        n = self._begin(f"[{self.label}{stage.label} {position}/{total}] {stage.from_inst.original.strip()}")
        self._done(n, began)
        for inst in steps:
            try:
                if inst.cmd in ("run", "copy", "add"):
                    position += 1
                    where = f"[{self.label}{stage.label} {position}/{total}]"
                    self._layer_step(stage, inst, f"{where} ONBUILD" if inst in triggers else where)
                else:
                    stage_mod.apply(stage, inst, escape=self.escape, build_args=self.build_args,
                                    meta_args=self.meta_args)
            except BuildError:
                raise
            except (words.WordError, context_mod.ContextError, files.CopyError, users.UserError,
                    stage_mod.StepError, ValueError) as err:
                raise self._error(inst, str(err)) from None
            except snapshot.RunFailed as err:
                raise self._error(inst, str(err)) from None
        stage.done = True

    def _start(self, stage: stage_mod.Stage) -> list[dockerfile.Instruction]:
        """The stage's starting point (its base image or earlier stage); the ONBUILD triggers of
        a base image, to run before the stage's own instructions."""
        inst = stage.from_inst
        for flag in inst.flags:
            name, _, value = flag.lstrip("-").partition("=")
            if name != "platform":
                raise self._error(inst, f"FROM: unknown flag --{name}")
            wanted = words.expand(value, self.meta_args, escape=self.escape)
            if manifest.parse_platform(wanted) != manifest.host():
                raise self._error(inst, f"FROM --platform={wanted}: only this host's platform "
                                        f"({manifest.host()}) can be built here")
        parent = self._stage_ref(stage.source)
        if parent is not None and parent.index < stage.index:
            stage.config = json.loads(json.dumps(parent.config))
            stage.layers, stage.history, stage.key = parent.layers, list(parent.history), parent.key
            return []  # as BuildKit: an earlier stage's own ONBUILD instructions are not triggered
        named = dict(self.request.additional_contexts).get(stage.source, "")
        if named and not named.startswith("docker-image://"):
            raise self._error(inst, f"FROM {stage.source}: that context is a directory, not an image")
        base = self._base_image(named.removeprefix("docker-image://") or stage.source, inst)
        stage.config = json.loads(json.dumps(base.config))
        stage.config.pop("OnBuild", None)
        stage.layers, stage.history = base.layers, list(base.history)
        stage.key = cache_mod.key("from", base.id)
        if not stage.config.get("Env"):
            stage.config["Env"] = [DEFAULT_PATH]
        return self._triggers(inst, list(base.config.get("OnBuild") or []))

    def _triggers(self, inst: dockerfile.Instruction, triggers: list[str]) -> list[dockerfile.Instruction]:
        """A base image's ONBUILD triggers as instructions, reported at the FROM line that
        inherits them (they are not in this Dockerfile)."""
        if not triggers:
            return []
        prefix = f"# escape={self.escape}\n" if self.escape != "\\" else ""
        text = prefix + "FROM scratch\n" + "".join(t if t.endswith("\n") else t + "\n" for t in triggers)
        try:
            parsed = dockerfile.parse(text, "ONBUILD")
        except dockerfile.DockerfileError as err:
            raise self._error(inst, f"the base image's ONBUILD triggers: {err}") from None
        out = []
        for trigger in parsed.instructions[1:]:
            if trigger.cmd in ("from", "onbuild", "maintainer"):
                raise self._error(inst, f"{trigger.cmd.upper()} isn't allowed as an ONBUILD trigger")
            out.append(dataclasses.replace(trigger, line=inst.line, end_line=inst.line))
        return out

    def _base_image(self, ref: str, inst: dockerfile.Instruction | None) -> image.Base:
        if ref == "scratch":
            return image.SCRATCH
        if ref not in self.bases:
            self.bases[ref] = self._resolve_base(ref, inst)
        return self.bases[ref]

    def _resolve_base(self, ref: str, inst: dockerfile.Instruction | None) -> image.Base:
        """The image `ref` names, pulled when the request asks or the store lacks it, its layers
        unpacked."""
        record = None if self.request.pull else self.store.resolve(ref)
        if record is None and self.pull is not None:
            try:
                self.pull(ref)
            except Exception as err:
                raise self._failed(inst, f"pulling {ref}: {err}") from None
            record = self.store.resolve(ref)
        if record is None:
            raise self._failed(inst, f"image {ref} is not in the store (pull it, or `image load` it first)")
        for layer in record.layers:
            unpack.ensure_layer(self.store, layer.chain_id, layer.diff_id, self.store.blob_path(layer.digest))
        return image.base_of(self.store, record)

    # -- RUN, COPY, ADD: a layer each (or none when nothing changed)
    def _layer_step(self, stage: stage_mod.Stage, inst: dockerfile.Instruction, where: str) -> None:
        with contextlib.ExitStack() as stack:
            linked = False
            if inst.cmd == "run":
                run, parts = self._run_plan(stage, inst, stack)
            else:
                apply, parts, linked = self._copy_plan(stage, inst, stack)
            k = cache_mod.key(stage.key, inst.cmd, parts)
            n = self._begin(f"{where} {inst.original.strip().splitlines()[0]}")
            began = time.monotonic()
            created_by = self._created_by(stage, inst)
            hit = self.cache.get(k)
            if hit is not None:
                for ref, chain in zip(hit, image.chain_ids(hit), strict=True):
                    unpack.ensure_layer(self.store, chain, ref.diff_id, self.store.blob_path(ref.digest))
                self.progress(f"#{n} CACHED")
                self.cached += 1
                empty = len(hit) == len(stage.layers)
                stage.layers = hit
            else:
                try:
                    if linked:
                        layers = self._linked(stage, inst, parts, apply)
                    else:
                        with snapshot.Snapshot(self.where, image.chain_ids(stage.layers)) as snap:
                            if inst.cmd == "run":
                                self._run(snap, stage, run, n, began)
                            else:
                                apply(snap)
                            layers = (*stage.layers, *_refs(snap.commit()))
                except Exception as err:  # the step's row fails, as BuildKit's does; the error goes on
                    self.progress(f"#{n} ERROR: {(str(err).splitlines() or [type(err).__name__])[0]}")
                    raise
                empty = len(layers) == len(stage.layers)
                stage.layers = layers
                self.cache.put(k, stage.layers)
                self.ran += 1
                self._done(n, began)
        stage.key = k
        entry: dict[str, Any] = {"created": None, "created_by": created_by,
                                 "comment": stage_mod.HISTORY_COMMENT}
        if empty:
            entry["empty_layer"] = True
        stage.history.append(entry)

    def _linked(self, stage: stage_mod.Stage, inst: dockerfile.Instruction, parts: list[Any],
                apply: Callable[[snapshot.Snapshot], None]) -> tuple[image.LayerRef, ...]:
        """COPY --link: the copy made on an empty root, its layer cached by the copy alone (not
        what lies below it), so that a changed base takes the same layer again (BuildKit's
        rebase); the stage's layers with it on top."""
        below = image.chain_ids(stage.layers)
        k = cache_mod.key("link", inst.cmd, parts)
        made = self.cache.get(k)
        if made is None:
            with snapshot.Snapshot(self.where, ()) as snap:
                apply(snap)
                made = _refs(snap.commit(apart=True, below=below[-1] if below else None))
            self.cache.put(k, made)
        layers = (*stage.layers, *made)
        for ref, chain in list(zip(layers, image.chain_ids(layers), strict=True))[len(below):]:
            unpack.ensure_layer(self.store, chain, ref.diff_id, self.store.blob_path(ref.digest))
        return layers

    def _created_by(self, stage: stage_mod.Stage, inst: dockerfile.Instruction) -> str:
        if inst.cmd == "run":
            argv = list(inst.args) if inst.json_form else [*stage.shell, stage_mod.text_of(inst, self.escape)]
            return "RUN " + " ".join(argv) + " # buildkit"
        return inst.original.strip().splitlines()[0] + " # buildkit"

    def _run(self, snap: snapshot.Snapshot, stage: stage_mod.Stage, run: snapshot.Run, n: int,
             began: float) -> None:
        def output(line: str) -> None:
            self.progress(f"#{n} {time.monotonic() - began:.3f} {line}")
        snap.run(run, output)

    def _run_plan(self, stage: stage_mod.Stage, inst: dockerfile.Instruction,
                  stack: contextlib.ExitStack) -> tuple[snapshot.Run, list[Any]]:
        network = self.request.network or "default"
        mounts: list[snapshot.Mount] = []
        parts: list[Any] = []
        for flag in inst.flags:
            name, _, value = flag.lstrip("-").partition("=")
            if name == "network":
                network = value
            elif name == "mount":
                mount, part = self._mount(stage, inst, _mount_options(value), stack)
                if mount is not None:
                    mounts.append(mount)
                parts.append(part)
            elif name == "security":
                if value != "sandbox":
                    raise self._error(inst, f"RUN --security={value}: only sandbox is allowed")
            else:
                raise self._error(inst, f"RUN: unknown flag --{name}")
        if network not in snapshot.NETWORKS:
            raise self._error(inst, f"RUN --network={network}: expected none, host or default")
        if inst.json_form:
            argv = list(inst.args)
        else:
            argv = [*stage.shell, self._script(inst)]
        env = {**stage.args, **stage.env()}
        cfg = stage.config
        run = snapshot.Run(argv=tuple(argv), env=tuple(f"{k}={v}" for k, v in env.items()),
                           user=cfg.get("User") or "", workdir=cfg.get("WorkingDir") or "/",
                           network=network, mounts=tuple(mounts), extra_hosts=self.request.extra_hosts,
                           shm_size=self.request.shm_size)
        parts += [argv, sorted(env.items()), run.user, run.workdir, network]
        return run, parts

    def _script(self, inst: dockerfile.Instruction) -> str:
        """The shell form's script; heredocs after it, as the shell reads them, or alone the script."""
        text = stage_mod.text_of(inst, self.escape)
        if not inst.heredocs:
            return text
        first = inst.heredocs[0]
        if len(inst.heredocs) == 1 and re.fullmatch(r"<<-?[\"']?" + re.escape(first.name) + r"[\"']?", text):
            return first.content
        body = "".join(h.content + ("" if h.content.endswith("\n") else "\n") + h.name + "\n"
                       for h in inst.heredocs)
        return f"{text}\n{body}"

    def _mount(self, stage: stage_mod.Stage, inst: dockerfile.Instruction, opts: dict[str, str],
               stack: contextlib.ExitStack) -> tuple[snapshot.Mount | None, Any]:
        kind = opts.get("type", "bind")
        target = opts.get("target") or opts.get("dst") or opts.get("destination") or ""
        if kind == "secret":
            sid = opts.get("id") or posixpath.basename(target)
            target = target or f"/run/secrets/{sid}"
            source = dict(self.request.secrets).get(sid)
            if source is None:
                if opts.get("required", "false") in ("true", ""):
                    raise self._error(inst, f"secret {sid} is required but was not given")
                return None, ["secret", sid, None]
            return snapshot.Mount(target, source), ["secret", sid, target]
        if not target:
            raise self._error(inst, f"RUN --mount type={kind}: a target is required")
        if not target.startswith("/"):
            target = posixpath.join(stage.config.get("WorkingDir") or "/", target)
        if kind == "tmpfs":
            return snapshot.Mount(target, type="tmpfs", read_only=False), ["tmpfs", target]
        if kind == "cache":
            cid = opts.get("id") or target
            host = self.store.root / "build" / "cache-mounts" / hashlib.sha256(cid.encode()).hexdigest()[:32]
            if not host.is_dir():
                host.mkdir(parents=True, exist_ok=True)
                os.chmod(host, int(opts.get("mode", "755"), 8))
                os.chown(host, int(opts.get("uid", "0")), int(opts.get("gid", "0")))
            return snapshot.Mount(target, str(host), read_only=False), ["cache", cid, target]
        if kind == "bind":
            source = opts.get("source") or opts.get("src") or "."
            rw = any(opts.get(name, "false") in ("true", "") for name in ("rw", "readwrite"))
            origin = opts.get("from", "")
            if origin:
                root, key = self._other_root(origin, stack)
                with self._resolving(root, source) as real:
                    return (self._bind(target, real, rw, stack),
                            ["bind", origin, key, source, target, *(["rw"] if rw else [])])
            ctx = self._context("")
            entries = ctx.sources([source])
            if len(entries) != 1:
                raise self._error(inst, f"RUN --mount source={source}: expected one file or directory")
            key = ctx.checksum([source])
            return (self._bind(target, entries[0].path, rw, stack),
                    ["bind", key, source, target, *(["rw"] if rw else [])])
        raise self._error(inst, f"RUN --mount type={kind}: expected bind, cache, secret or tmpfs")

    def _bind(self, target: str, source: Path, rw: bool, stack: contextlib.ExitStack) -> snapshot.Mount:
        """A bind of `source`; with rw, of a writable view of it whose writes the step's end
        discards (the context, a stage or an image are never written)."""
        if not rw:
            return snapshot.Mount(target, str(source))
        scratch = stack.enter_context(snapshot.Scratch(self.where, source))
        return snapshot.Mount(target, str(scratch.path), read_only=False)

    @contextlib.contextmanager
    def _resolving(self, root: Path, path: str) -> Iterator[Path]:
        writer = files.Writer(root, files.Owner(), None)
        real = writer.real(path)
        if real is None:
            raise files.CopyError(f"{path}: not found")
        yield real

    def _context(self, name: str) -> context_mod.Context:
        """The build context, or an additional one by name (a directory)."""
        if name not in self.contexts:
            if name:
                path = Path(dict(self.request.additional_contexts)[name])
                self.contexts[name] = context_mod.Context(path, ignore.read(path, "Dockerfile"))
            else:
                root = self.request.context
                self.contexts[name] = context_mod.Context(root, ignore.read(root, self.request.dockerfile))
        return self.contexts[name]

    def _other_root(self, origin: str, stack: contextlib.ExitStack) -> tuple[Path, str]:
        """A stage's or image's files, in a snapshot for the step; and a cache key part
        standing for their content."""
        chains, key = self._other(origin)
        return stack.enter_context(snapshot.Snapshot(self.where, chains)).merged, key

    def _other(self, origin: str) -> tuple[tuple[str, ...], str]:
        """A stage's or image's layers (their chain ids) and a cache key part standing for their
        content: known without mounting anything, so that a cached step mounts nothing."""
        stage = self._stage_ref(origin)
        if stage is not None:
            if not stage.done:
                raise BuildError(f"stage {origin} is not built before it is used")
            return image.chain_ids(stage.layers), f"stage:{stage.key}"
        extra = dict(self.request.additional_contexts)
        if origin in extra and not extra[origin].startswith("docker-image://"):
            raise BuildError(f"context {origin} is a directory; use it with COPY --from")
        ref = extra.get(origin, origin).removeprefix("docker-image://")
        base = self._base_image(ref, None)
        return base.chain_ids, f"image:{base.id}"

    def _copy_plan(self, stage: stage_mod.Stage, inst: dockerfile.Instruction, stack: contextlib.ExitStack
                   ) -> tuple[Callable[[snapshot.Snapshot], None], list[Any], bool]:
        """How the step copies, its cache key's parts, and whether it is linked (COPY --link:
        made apart from the layers below; not when --chown names a user only they can say)."""
        env, esc = stage.visible(), self.escape
        origin = chown = chmod = ""
        excludes: list[str] = []
        parents = link = False
        for flag in inst.flags:
            name, _, value = flag.lstrip("-").partition("=")
            if name in ("parents", "link"):
                if value not in ("", "true", "false"):
                    raise self._error(inst, f"{inst.cmd.upper()} --{name}={value}: expected true or false")
                if name == "parents":
                    parents = value != "false"
                else:
                    link = value != "false"
            elif name == "from":
                origin = words.expand(value, self.meta_args, escape=esc)
            elif name == "chown":
                chown = words.expand(value, env, escape=esc)
            elif name == "chmod":
                chmod = words.expand(value, env, escape=esc)
            elif name == "exclude":
                excludes.append(words.expand(value, env, escape=esc))
            elif name in ("checksum", "keep-git-dir"):
                continue  # for remote sources, which are refused below
            else:
                raise self._error(inst, f"{inst.cmd.upper()}: unknown flag --{name}")
        if inst.json_form:
            args = list(inst.args)
        else:
            args = words.expand_words(stage_mod.text_of(inst, self.escape), env, escape=esc)
        if len(args) < 2:
            raise self._error(inst, f"{inst.cmd.upper()} requires at least two arguments: "
                                    "source and destination")
        *sources, dest = args
        heredocs = {h.name: h for h in inst.heredocs}
        doc_sources = [s for s in sources if _heredoc_name(s) in heredocs]
        path_sources = [s for s in sources if s not in doc_sources]
        for s in path_sources:
            if re.match(r"^[a-z][a-z0-9+.-]*://", s) or s.startswith("git@"):
                if inst.cmd == "add":
                    raise self._error(inst, f"ADD {s}: remote sources cannot be fetched here (no network for "
                                            "builds); download it into the context and ADD or COPY the file")
                raise self._error(inst, f"COPY {s}: a URL is not a path in the context")
        workdir = stage.config.get("WorkingDir") or "/"
        dest_path = posixpath.normpath(posixpath.join(workdir, dest))
        dir_dest = (dest.endswith(("/", "/.", "/..")) or dest in (".", "..") or len(sources) > 1
                    or any(_has_glob(s) for s in path_sources) or parents)
        chmod_mode = files.parse_chmod(chmod) if chmod else None
        parts: list[Any] = [dest_path, dir_dest, chown, chmod, excludes]
        parts += [name for name, on in (("parents", parents), ("link", link)) if on]
        parts += [[h.name, h.content] for h in inst.heredocs if h.name in map(_heredoc_name, doc_sources)]
        extra = dict(self.request.additional_contexts)
        chains: tuple[str, ...] | None = None  # COPY --from an image: its layers
        root: Path | None = None  # COPY --from a stage: its files, mounted for the key
        ctx: context_mod.Context | None = None
        if origin and (origin not in extra or extra[origin].startswith("docker-image://")):
            chains, key = self._other(origin)
            if key.startswith("stage:"):
                # BuildKit's rule: the copy is keyed by the files it takes, not by how the stage
                # made them, so a stage rebuilt into the same files keeps the steps after this
                root = stack.enter_context(snapshot.Snapshot(self.where, chains)).merged
                key = "stage-files:" + context_mod.tree_checksum(
                    [(rel, real) for s in path_sources for rel, real in files.glob_in(root, s)])
            parts += [key, path_sources]
        else:
            ctx = self._context(origin if origin else "")
            if path_sources:
                parts.append(ctx.checksum(path_sources, excludes=tuple(excludes)))
            parts.append(path_sources)
        is_add = inst.cmd == "add"

        def apply(snap: snapshot.Snapshot) -> None:
            owner = files.Owner()
            if chown:
                user = users.resolve_in_rootfs(chown, snap.merged)
                owner = files.Owner(user.uid, user.gid)
            writer = files.Writer(snap.merged, owner, chmod_mode)
            for s in doc_sources:
                h = heredocs[_heredoc_name(s)]
                target = posixpath.join(dest_path, h.name) if dir_dest else dest_path
                content = _expand_heredoc(h.content, env, self.escape) if h.expand else h.content
                writer.write_file(target, content.encode())
            if ctx is not None:
                # --parents: each source alone, to know which pattern (and pivot) an entry is of
                for group in [[s] for s in path_sources] if parents else [path_sources]:
                    for entry in ctx.sources(group, excludes=tuple(excludes)):
                        target = _kept(dest_path, group[0], entry.rel) if parents else dest_path
                        files.copy_source(writer, entry.rel, entry.path, target, dir_dest and not parents,
                                          is_add, _under(ctx, entry, excludes))
            else:
                top = root
                if top is None:  # an image's files, mounted only now: a cached step needs none
                    assert chains is not None
                    top = stack.enter_context(snapshot.Snapshot(self.where, chains)).merged
                found = [(s, rel, real) for s in path_sources for rel, real in files.glob_in(top, s)]
                if not found and path_sources:
                    raise files.CopyError("no source files were specified or found: "
                                          + " ".join(path_sources))
                for s, rel, real in found:
                    target = _kept(dest_path, s, rel) if parents else dest_path
                    files.copy_source(writer, rel, real, target, dir_dest and not parents, False, None)
            writer.finish()
        numeric_owner = all(part.isdigit() for part in chown.split(":")) if chown else True
        return apply, parts, link and numeric_owner


def _refs(committed: tuple[Any, str] | None) -> tuple[image.LayerRef, ...]:
    """The layer a step committed (none when it changed nothing), as the image lists it."""
    if committed is None:
        return ()
    made = committed[0]
    return (image.LayerRef(made.digest, made.diff_id, made.media_type, made.size),)


def _kept(dest: str, pattern: str, rel: str) -> str:
    """COPY --parents: where a source lands, its path kept under `dest`: all of it, or what
    follows a `/./` in the source as written (BuildKit's pivot)."""
    written = pattern.lstrip("/")
    while written.startswith("./"):
        written = written[2:]
    rel = "" if rel == "." else rel.lstrip("/")
    if "/./" in written:
        pivot = posixpath.normpath(written.split("/./", 1)[0])
        if rel == pivot:
            rel = ""
        elif rel.startswith(pivot + "/"):
            rel = rel[len(pivot) + 1:]
    return posixpath.join(dest, rel) if rel else dest


def _heredoc_name(source: str) -> str:
    m = re.fullmatch(r"<<-?([\"']?)([^\"']+)\1", source)
    return m.group(2) if m else ""


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _under(ctx: context_mod.Context, entry: context_mod.Entry,
           excludes: list[str]) -> Callable[[], Iterator[tuple[str, Path]]]:
    """What lies under a context source dir, when the copy asks for it."""
    return lambda: ((sub.rel, sub.path) for sub in ctx.walk(entry, excludes=excludes))


_VARIABLE = re.compile(r"(?<!\\)\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def _expand_heredoc(content: str, env: dict[str, str], escape: str) -> str:
    """A COPY heredoc whose delimiter was not quoted: its variables replaced, as BuildKit does;
    quotes and the rest of the text stay as written, `\\$` is a literal `$`."""
    expanded = _VARIABLE.sub(lambda m: words.expand(m.group(0), env, escape=escape), content)
    return expanded.replace("\\$", "$")


def _mount_options(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        out[key.strip().lower()] = value.strip() if sep else ""
    return out
