"""The agent's network records on disk (one JSON file per network and per container), so that
a restarted agent knows what it made without asking anyone."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from pathlib import Path

from runtime import statefiles
from runtime.net import model


def _dir(state_root: Path, kind: str) -> Path:
    return Path(state_root) / "net" / kind


def _write(file: Path, data: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # 0600: a container's record carries its addresses, ports and aliases.
    statefiles.write(file, json.dumps(data, sort_keys=True))  # no indent: json's slow encoder


_parsed: dict[str, tuple[tuple[int, int, int], object]] = {}


def _read_all(folder: Path, parse):
    """Every record in `folder`, parsed; a file unchanged since the last read is not parsed again
    (records are replaced by rename, so inode, mtime and size tell a change)."""
    try:
        # scandir, not glob: every attach and sync reads the whole folder, so it is kept cheap
        with os.scandir(folder) as entries:
            files = sorted(e.path for e in entries if e.name.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in files:
        try:
            st = os.stat(name)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            hit = _parsed.get(name)
            if hit is None or hit[0] != key:
                with open(name) as f:
                    hit = _parsed[name] = (key, parse(json.load(f)))
        except FileNotFoundError:
            continue  # removed while we looked (a detach beside us)
        out.append(hit[1])
    return out


def network_file(state_root: Path, name: str) -> Path:
    return _dir(state_root, "networks") / f"{name}.json"


def save_network(state_root: Path, net: model.Network) -> None:
    _write(network_file(state_root, net.name), dataclasses.asdict(net))


def drop_network(state_root: Path, name: str) -> None:
    _drop(_dir(state_root, "networks") / f"{name}.json")


def _drop(file: Path) -> None:
    file.unlink(missing_ok=True)
    _parsed.pop(str(file), None)


def networks(state_root: Path) -> dict[str, model.Network]:
    found = _read_all(_dir(state_root, "networks"), lambda d: model.Network(**d))
    return {n.name: n for n in found}


def save_attachment(state_root: Path, att: model.Attachment) -> None:
    _write(_dir(state_root, "containers") / f"{att.container.container}.json", model.to_json(att))


def drop_attachment(state_root: Path, container: str) -> None:
    _drop(_dir(state_root, "containers") / f"{container}.json")


def attachments(state_root: Path) -> dict[str, model.Attachment]:
    found = _read_all(_dir(state_root, "containers"), model.attachment_from_json)
    return {a.container.container: a for a in found}


@contextlib.contextmanager
def locked(state_root: Path, what: str):
    """Hold an exclusive lock named `what` (read-then-act sequences that must not interleave)."""
    file = Path(state_root) / "net" / f"{what}.lock"
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(file, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _applied_rules_file(state_root: Path) -> Path:
    return Path(state_root) / "net" / "nft-applied.json"


def save_applied_rules(state_root: Path, rendered: str, listed: str | None) -> None:
    """The digests of the table last applied: as rendered, and as the kernel listed it then,
    so that a later look tells a table changed by hand from one a newer apply replaced."""
    _write(_applied_rules_file(state_root), {"rendered": rendered, "listed": listed})


def applied_rules(state_root: Path) -> tuple[str | None, str | None]:
    """(rendered, listed) digests of the last apply; (None, None) before any."""
    try:
        with open(_applied_rules_file(state_root)) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None, None
    return data.get("rendered"), data.get("listed")
