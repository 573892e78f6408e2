"""A build step's root: an overlay over a stage's layers whose upper dir is the step's layer; RUN in it."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import errno
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import structlog

from runtime.build import layer as layer_mod
from runtime.images import store as store_mod, unpack
from runtime.oci import caps, facts, model, seccomp, spec, users

log = structlog.get_logger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
MNT_DETACH = 2
TAIL_LINES = 10
# Kept off so that the upper dir is a plain layer: no index entries, no redirected renames, no
# metadata-only copy-ups pointing into the lower layers.
OVERLAY_OPTIONS = "index=off,redirect_dir=off,metacopy=off"
NETWORKS = ("none", "host", "default")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_libc = ctypes.CDLL(None, use_errno=True)

Output = Callable[[str], None]


class SnapshotError(Exception):
    """A build root that cannot be made, mounted or run in; says why."""


class RunFailed(SnapshotError):
    """A RUN whose command exited non-zero: its exit code and the last lines it printed."""

    def __init__(self, command: str, exit_code: int, tail: tuple[str, ...]) -> None:
        shown = "\n".join(tail)
        super().__init__(f"process \"{command}\" did not complete successfully: exit code: {exit_code}"
                         + (f"\n{shown}" if shown else ""))
        self.exit_code, self.tail = exit_code, tail


@dataclasses.dataclass(frozen=True)
class Mount:
    """A RUN --mount, made ready by the caller: a host `source` (none for tmpfs) at `target`."""
    target: str
    source: str = ""
    type: str = "bind"  # bind | tmpfs
    read_only: bool = True


@dataclasses.dataclass(frozen=True)
class Run:
    """One RUN: the argv and what the stage says it runs as."""
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()       # KEY=value
    user: str = ""
    workdir: str = "/"
    network: str = "none"           # none | host | default (= none: a build here has no egress)
    mounts: tuple[Mount, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int = model.DEFAULT_SHM_SIZE


@dataclasses.dataclass(frozen=True)
class Where:
    """The places one builder uses: temp dirs under the state root, runc's root, the cgroup parent."""
    store: store_mod.Store
    tmp_dir: Path
    runc_root: Path
    cgroup_parent: str = "/pcompose-build"
    runc_binary: str = "/usr/sbin/runc"


def sweep(where: Where) -> list[str]:
    """What a builder killed halfway left (a RUN's container under runc, step roots mounted in
    the temp dir), removed; call it before this root's first build. The names of what went."""
    gone = []
    if where.runc_root.is_dir():
        for state in where.runc_root.iterdir():
            subprocess.run([where.runc_binary, "--root", str(where.runc_root), "delete", "--force",
                            state.name], capture_output=True, check=False)
            gone.append(f"container {state.name}")
    if where.tmp_dir.is_dir():
        for step in where.tmp_dir.iterdir():
            _unmount(step / "merged")
            shutil.rmtree(step, ignore_errors=True)
            gone.append(f"step root {step.name}")
    return gone


class Snapshot:
    """Mounted on enter over `chain_ids` (bottom first); `commit()` unmounts and returns the layer of
    what changed (None when nothing did); leaving the context unmounts and deletes everything."""

    def __init__(self, where: Where, chain_ids: tuple[str, ...]) -> None:
        if len(chain_ids) > 499:
            raise SnapshotError(f"{len(chain_ids)} layers: overlayfs takes at most 499 below a build step")
        self.where, self.chain_ids = where, tuple(chain_ids)
        self.base = Path()
        self.stubs: set[str] = set()

    @property
    def merged(self) -> Path:
        return self.base / "merged"

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    def __enter__(self) -> Snapshot:
        self.where.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(dir=self.where.tmp_dir, prefix="step-"))
        for d in ("upper", "work", "merged", "empty", "etc"):
            (self.base / d).mkdir()
        try:
            with self.where.store.shared():
                self._mount()
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _unmount(self.merged)
        shutil.rmtree(self.base, ignore_errors=True)

    def lower_dirs(self) -> list[Path]:
        """Top first, as overlayfs lists them."""
        return [self.where.store.layer_dir(c) / "diff" for c in reversed(self.chain_ids)]

    def _mount(self) -> None:
        store = self.where.store
        if self.chain_ids:
            for c in self.chain_ids:
                if not store.has_layer(c):
                    raise SnapshotError(f"layer {c} is not unpacked")
                unpack.ensure_link(store, c)
            names = [unpack.short_name(c) for c in reversed(self.chain_ids)]
            cwd = store.layers_dir / "l"
        else:
            names, cwd = ["empty"], self.base
        tail = f"upperdir={self.upper},workdir={self.base / 'work'},{OVERLAY_OPTIONS}"
        absolute = "lowerdir=" + ":".join(str(cwd / n) for n in names) + "," + tail
        if len(absolute) < PAGE:
            if _libc.mount(b"overlay", str(self.merged).encode(), b"overlay", 0, absolute.encode()) != 0:
                raise SnapshotError(f"mounting the build root failed: {os.strerror(ctypes.get_errno())}")
            return
        # many layers: short names relative to layers/l keep the options under a page
        options = "lowerdir=" + ":".join(names) + "," + tail
        res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)],
                             cwd=cwd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SnapshotError(f"mounting the build root failed: {res.stderr.strip()}")

    def commit(self, *, apart: bool = False, below: str | None = None) -> tuple[layer_mod.Layer, str] | None:
        """Unmount, take out what runc made to mount over, store the upper dir as a layer and
        move it into the store as that layer's dir: the layer and its chain id (None when
        nothing changed). The layer goes on the snapshot's own layers, or, made `apart` from
        them (COPY --link), on the chain `below` (None: at the bottom)."""
        _unmount(self.merged)
        layer_mod.remove_stubs(self.upper, self.stubs, self.lower_dirs())
        if layer_mod.is_empty(self.upper):
            return None
        with self.where.store.shared():
            made = layer_mod.write(self.where.store, self.upper, clean=True)
        if not apart:
            below = self.chain_ids[-1] if self.chain_ids else None
        return made, layer_mod.adopt(self.where.store, self.upper, made, below)

    # -- RUN
    def run(self, step: Run, output: Output) -> None:
        """Run `step` to its end under runc in this root, its output lines to `output`;
        RunFailed when it exits non-zero. runc's cgroup and state go with the process."""
        if step.network not in NETWORKS:
            raise SnapshotError(f"RUN --network={step.network}: expected one of {', '.join(NETWORKS)}")
        cid = "build-" + uuid.uuid4().hex[:12]
        bundle = self.base / "bundle"
        bundle.mkdir(exist_ok=True)
        document = self._spec(cid, step)
        self._note_stubs(document)
        (bundle / "config.json").write_text(spec.dumps(document))
        argv = [self.where.runc_binary, "--root", str(self.where.runc_root), "run", "--bundle", str(bundle),
                cid]
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                tail.append(line)
                output(line)
            code = proc.wait()
        except BaseException:
            self._kill(cid, proc)
            raise
        finally:
            self._delete(cid)
        if code != 0:
            raise RunFailed(" ".join(step.argv), code, tuple(tail))

    def _spec(self, cid: str, step: Run) -> dict:
        user = users.resolve_in_rootfs(step.user or "0", self.merged)
        network = "host" if step.network == "host" else "private"
        config = model.ContainerConfig(
            name=cid, identity=model.Identity(project="build", service=cid), rootfs=str(self.merged),
            image=model.ImageConfig(env=step.env), entrypoint=tuple(step.argv), command=(),
            working_dir=step.workdir or "/", user=step.user,
            hostname="buildkitsandbox" if network != "host" else "",
            uts="host" if network == "host" else "private",
            mounts=tuple(model.Mount(m.target, m.source, m.type, m.read_only) for m in step.mounts),
            extra_hosts=step.extra_hosts, shm_size=step.shm_size, network=network)
        held = caps.effective((), (), False, facts.capability_bound())
        host = spec.HostFacts(
            user=user, cgroups_path=f"{self.where.cgroup_parent.rstrip('/')}/{cid}",
            etc_dir=str(self.base / "etc"), capability_bound=facts.capability_bound(),
            seccomp=seccomp.for_container("", held))  # docker's default filter, as for any container
        nameservers = facts.host_nameservers() if network == "host" else ()
        for name, text in spec.etc_files(config, nameservers).items():
            (self.base / "etc" / name).write_text(text)
        return spec.build(config, host)

    def _note_stubs(self, document: dict) -> None:
        """Every path a mount needs that the root does not have yet: runc makes it, the layer
        must not keep it."""
        for m in document.get("mounts", ()):
            parts = [p for p in m["destination"].split("/") if p]
            for i in range(1, len(parts) + 1):
                rel = "/".join(parts[:i])
                if not os.path.lexists(self.merged / rel):
                    self.stubs.add(rel)

    def _kill(self, cid: str, proc: subprocess.Popen) -> None:
        subprocess.run([self.where.runc_binary, "--root", str(self.where.runc_root), "kill", cid, "KILL"],
                       capture_output=True, check=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _delete(self, cid: str) -> None:
        subprocess.run([self.where.runc_binary, "--root", str(self.where.runc_root), "delete", "--force",
                        cid], capture_output=True, check=False)
        # runc took the step's own cgroup; the builds' parent goes once no other step is in it
        for hierarchy in CGROUP_ROOT.iterdir():
            if hierarchy.is_dir() and not hierarchy.is_symlink():
                with contextlib.suppress(OSError):
                    os.rmdir(hierarchy / self.where.cgroup_parent.strip("/"))


class Scratch:
    """A writable view of a host file or directory for RUN --mount=type=bind,rw: what the step
    writes there is thrown away with the view (BuildKit's rule), the source stays untouched. A
    directory is an overlay with the source as its only lower dir; a file is copied."""

    def __init__(self, where: Where, source: Path) -> None:
        self.where, self.source = where, Path(source)
        self.base = Path()

    @property
    def path(self) -> Path:
        """What to bind into the step: the overlay's merged dir, or the file's copy."""
        return self.base / ("merged" if self.source.is_dir() else "file")

    def __enter__(self) -> Scratch:
        self.where.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(dir=self.where.tmp_dir, prefix="bind-"))
        try:
            if not self.source.is_dir():
                shutil.copy2(self.source, self.base / "file", follow_symlinks=True)
            elif not self._overlay():
                # a path overlay's options cannot hold, or overlays stacked too deep: a copy
                shutil.rmtree(self.base / "merged")
                shutil.copytree(self.source, self.base / "merged", symlinks=True)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        return self

    def _overlay(self) -> bool:
        for d in ("upper", "work", "merged"):
            (self.base / d).mkdir()
        if any(c in str(self.source) for c in ",:\\"):
            return False
        options = (f"lowerdir={self.source},upperdir={self.base / 'upper'},"
                   f"workdir={self.base / 'work'},{OVERLAY_OPTIONS}")
        return _libc.mount(b"overlay", str(self.base / "merged").encode(), b"overlay", 0,
                           options.encode()) == 0

    def __exit__(self, *exc: object) -> None:
        _unmount(self.base / "merged")
        shutil.rmtree(self.base, ignore_errors=True)


def _unmount(merged: Path) -> None:
    """Unmount `merged` until nothing is mounted there (stacked mounts too); busy: detached."""
    target = str(merged).encode()
    while True:
        if _libc.umount2(target, 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY and _libc.umount2(target, MNT_DETACH) == 0:
            continue
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise SnapshotError(f"unmounting {merged} failed: {os.strerror(err)}")
