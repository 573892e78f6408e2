"""Named volumes of the local driver: a directory (or a bind/tmpfs mount) per volume under the state root.

A volume lives in `<root>/volumes/<name>/` with `_data/` (what containers mount, as in docker)
and `meta.json` (its labels and options), so a restarted agent reads every volume back from disk.
`driver_opts` follow docker's local driver: `type`, `o` and `device` as for mount(8), e.g.
`{type: none, o: bind, device: /srv/data}` or `{type: tmpfs, device: tmpfs, o: size=64m}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from runtime import mounts, statefiles

META = "meta.json"
DATA = "_data"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class VolumeError(Exception):
    """A volume cannot be made, mounted or removed as asked."""


@dataclasses.dataclass(frozen=True)
class VolumeSpec:
    name: str
    driver: str = "local"
    driver_opts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Volume:
    name: str
    mountpoint: Path
    driver: str
    driver_opts: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    created_at: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def _dir(root: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise VolumeError(f"invalid volume name {name!r}: use letters, digits, '_', '.', '-'")
    return Path(root) / "volumes" / name


def _read(path: Path) -> Volume | None:
    try:
        return _load(path)
    except FileNotFoundError:
        return None


def _load(path: Path) -> Volume:
    meta = json.loads((path / META).read_text())
    return Volume(
        name=meta["name"],
        mountpoint=path / DATA,
        driver=meta["driver"],
        driver_opts=tuple(tuple(kv) for kv in meta["driver_opts"]),
        labels=tuple(tuple(kv) for kv in meta["labels"]),
        created_at=meta["created_at"],
    )


def _mount_args(spec: VolumeSpec, target: Path) -> list[str] | None:
    opts = dict(spec.driver_opts)
    if not opts:
        return None
    kind, device, options = opts.get("type", ""), opts.get("device", ""), opts.get("o", "")
    if not device:
        raise VolumeError(f"volume {spec.name}: driver_opts need a 'device'")
    if "bind" in options.split(","):
        if not Path(device).is_dir():
            raise VolumeError(f"volume {spec.name}: bind device {device} is not a directory")
        return ["mount", "--bind", device, str(target)]
    args = ["mount", "-t", kind or "none"]
    if options:
        args += ["-o", options]
    return args + [device, str(target)]


def ensure(root: Path, spec: VolumeSpec) -> Volume:
    """Create the volume if missing and mount its driver_opts; an existing one is kept as it is.

    Safe to repeat: a second call finds meta.json and the mount, and does nothing.
    """
    if spec.driver != "local":
        raise VolumeError(f"volume {spec.name}: driver {spec.driver!r} is not supported (only 'local')")
    path = _dir(root, spec.name)
    args = _mount_args(spec, path / DATA)  # refuse bad driver_opts before anything is made
    existing = _read(path)
    if existing is None:
        (path / DATA).mkdir(parents=True, exist_ok=True)
        meta = {
            "name": spec.name,
            "driver": spec.driver,
            "driver_opts": [list(kv) for kv in spec.driver_opts],
            "labels": [list(kv) for kv in spec.labels],
            "created_at": os.stat(path).st_mtime,
        }
        # 0600: driver_opts may name a device and its mount options (a password for cifs).
        statefiles.write(path / META, json.dumps(meta, indent=1))
        existing = _load(path)
    if existing.driver_opts != spec.driver_opts:
        args = _mount_args(existing_spec(existing), existing.mountpoint)
    if args and not mounts.is_mounted(existing.mountpoint):
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise VolumeError(f"volume {spec.name}: {' '.join(args)}: {result.stderr.strip()}")
    return existing


def existing_spec(volume: Volume) -> VolumeSpec:
    return VolumeSpec(volume.name, volume.driver, volume.driver_opts, volume.labels)


def get(root: Path, name: str) -> Volume | None:
    return _read(_dir(root, name))


def list_all(root: Path) -> list[Volume]:
    base = Path(root) / "volumes"
    if not base.is_dir():
        return []
    found = (_read(p) for p in sorted(base.iterdir()) if p.is_dir())
    return [v for v in found if v is not None]


def remove(root: Path, name: str) -> bool:
    """Unmount and delete the volume and its data. A volume that is not there is success (False)."""
    path = _dir(root, name)
    data = path / DATA
    if mounts.is_mounted(data):
        result = subprocess.run(["umount", str(data)], capture_output=True, text=True)
        if result.returncode != 0:
            raise VolumeError(f"volume {name}: umount: {result.stderr.strip()} (in use?)")
    if not path.exists():
        return False
    # meta.json goes first: a removal cut halfway leaves no half-volume that looks whole.
    (path / META).unlink(missing_ok=True)
    shutil.rmtree(path)
    return True


def is_empty(volume: Volume) -> bool:
    """docker copies the image's content into a new volume only while the volume is empty."""
    try:
        return not any(volume.mountpoint.iterdir())
    except FileNotFoundError:
        return True
