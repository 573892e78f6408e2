"""The agent's network records on disk (one JSON file per network and per container), so that
a restarted agent knows what it made without asking anyone."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from pathlib import Path

from runtime.net import model


def _dir(state_root: Path, kind: str) -> Path:
    return Path(state_root) / "net" / kind


def _write(file: Path, data: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, file)


def _read_all(folder: Path) -> list[dict]:
    if not folder.is_dir():
        return []
    return [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]


def save_network(state_root: Path, net: model.Network) -> None:
    _write(_dir(state_root, "networks") / f"{net.name}.json", dataclasses.asdict(net))


def drop_network(state_root: Path, name: str) -> None:
    (_dir(state_root, "networks") / f"{name}.json").unlink(missing_ok=True)


def networks(state_root: Path) -> dict[str, model.Network]:
    return {d["name"]: model.Network(**d) for d in _read_all(_dir(state_root, "networks"))}


def save_attachment(state_root: Path, att: model.Attachment) -> None:
    _write(_dir(state_root, "containers") / f"{att.container.container}.json", model.to_json(att))


def drop_attachment(state_root: Path, container: str) -> None:
    (_dir(state_root, "containers") / f"{container}.json").unlink(missing_ok=True)


def attachments(state_root: Path) -> dict[str, model.Attachment]:
    found = [model.attachment_from_json(d) for d in _read_all(_dir(state_root, "containers"))]
    return {a.container.container: a for a in found}


@contextlib.contextmanager
def locked(state_root: Path, what: str):
    """Hold an exclusive lock named `what` (read-then-act sequences that must not interleave)."""
    file = Path(state_root) / "net" / f"{what}.lock"
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
