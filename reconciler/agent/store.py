"""The desired state per project, in SQLite under the state root; safe for several writers."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.plan import model
from runtime import statefiles

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    config_files TEXT NOT NULL,
    working_dir TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER NOT NULL,
    applied_generation INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    hashes TEXT NOT NULL DEFAULT '{}'
);
"""

# A project being taken down keeps its row until the machine is clean, so that a
# restarted agent finishes the `down`.
REMOVING = "removing"


@dataclass(frozen=True)
class ProjectRecord:
    """One project's desired state. `stack` is the canonical JSON of the normalized stack."""

    name: str
    stack: str
    config_files: tuple[str, ...] = ()
    working_dir: str = ""
    options: model.DiffOptions = model.DiffOptions(start_stopped=True)
    status: str = "pending"
    generation: int = 0
    applied_generation: int = 0
    updated_at: float = 0.0
    reason: str = ""  # why the status is what it is (the failure, for `ls`/`ps`)
    hashes: tuple[tuple[str, str], ...] = ()  # (service, config hash) of the enabled services


DB = "desired.db"
BACKUP = "desired.db.bak"  # the last store that passed its check, copied when an agent starts


class Damaged(Exception):
    """The store's file is damaged; the message names it and the last good copy."""

    def __init__(self, path: Path, detail: str) -> None:
        backup = path.with_name(BACKUP)
        try:
            made = dt.datetime.fromtimestamp(backup.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        except FileNotFoundError:
            found = f"there is no copy to go back to ({backup} does not exist)"
        else:
            found = (f"the last good copy is {backup} (of {made}); to go back to it, with no "
                     f"agent running: cp {backup} {path} && rm -f {path}-wal {path}-shm")
        super().__init__(f"the desired-state store {path} is damaged ({detail}); the agent "
                         f"will not start on it: {found}")
        self.path, self.backup = path, backup


class Store:
    """Each call is one short transaction; writers take the lock up front (BEGIN IMMEDIATE)
    so two agents or CLIs never interleave a read-modify-write."""

    def __init__(self, root: Path) -> None:
        statefiles.private_dir(root)
        self.path = root / DB
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm it makes the mode
        # of the database file, and they hold the same stacks (environment values included).
        os.close(statefiles.open_private(self.path, os.O_RDWR | os.O_CREAT))
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError):
                raise  # locked, out of space: the file may well be sound
            raise Damaged(self.path, str(error)) from None
        for kept in ("-wal", "-shm"):  # made wider by an older version
            statefiles.narrow(f"{self.path}{kept}")

    def close(self) -> None:
        self._db.close()

    def check(self) -> None:
        """Raise Damaged unless every page of the store reads back sound (quick_check)."""
        try:
            found = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as error:
            found = [str(error)]
        if found != ["ok"]:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise Damaged(self.path, f"quick_check: {found[0] if found else 'no answer'}{more}")

    def back_up(self) -> Path:
        """Copy the store, as one consistent snapshot, to desired.db.bak (0600), replacing the
        last copy only once the new one is whole."""
        backup = self.path.with_name(BACKUP)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{BACKUP}.", suffix=".tmp")
        os.close(fd)
        try:
            target = sqlite3.connect(tmp)
            try:
                self._db.backup(target)
            finally:
                target.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, backup)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return backup

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(self, record: ProjectRecord) -> ProjectRecord:
        """Store a new desired state; its generation is one more than the last one."""
        with self._writing() as db:
            row = db.execute("SELECT generation, applied_generation FROM projects "
                             "WHERE name = ?", (record.name,)).fetchone()
            generation = (row["generation"] if row else 0) + 1
            stored = dataclasses.replace(record, generation=generation, reason="",
                                         applied_generation=row["applied_generation"] if row
                                         else 0, updated_at=time.time())
            db.execute(INSERT, _row(stored))
        return stored

    def get(self, name: str) -> ProjectRecord | None:
        row = self._db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def version(self, name: str) -> tuple[int, float] | None:
        """(generation, updated_at) of a project: which submission is stored, without
        reading the stack itself."""
        row = self._db.execute("SELECT generation, updated_at FROM projects WHERE name = ?",
                               (name,)).fetchone()
        return (row["generation"], row["updated_at"]) if row else None

    def list(self) -> list[ProjectRecord]:
        rows = self._db.execute("SELECT * FROM projects ORDER BY name").fetchall()
        return [_record(r) for r in rows]

    def mark_removing(self, name: str, remove_volumes: bool = False) -> ProjectRecord | None:
        """`down`: the desired state becomes "nothing"; None if the project is unknown."""
        with self._writing() as db:
            row = db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            current = _record(row)
            removing = dataclasses.replace(
                current, stack="{}", status=REMOVING, generation=current.generation + 1,
                options=model.DiffOptions(remove_orphans=True, remove_volumes=remove_volumes),
                updated_at=time.time(), reason="")
            db.execute(INSERT, _row(removing))
        return removing

    def delete(self, name: str) -> bool:
        with self._writing() as db:
            return db.execute("DELETE FROM projects WHERE name = ?", (name,)).rowcount > 0

    def set_status(self, name: str, status: str, reason: str = "") -> None:
        """A project being removed keeps that status whatever a reconcile reports."""
        with self._writing() as db:
            db.execute("UPDATE projects SET status = ?, reason = ? WHERE name = ? "
                       "AND status != ?", (status, reason, name, REMOVING))

    def drop_services(self, name: str, services: set[str]) -> None:
        """Want `services` no more (`kill --remove-orphans`: the stack file lost them), so
        that the loop does not make again what the user had removed."""
        with self._writing() as db:
            row = db.execute("SELECT hashes FROM projects WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            hashes = {k: v for k, v in json.loads(row["hashes"]).items() if k not in services}
            db.execute("UPDATE projects SET hashes = ? WHERE name = ?",
                       (json.dumps(hashes), name))

    def hold_removed(self, name: str, replicas: set[str]) -> None:
        """`rm`: the loop makes these replicas (`service:web:2`) no more, until a submission
        asks for their service again. The submission itself stays: no new generation."""
        with self._writing() as db:
            row = db.execute("SELECT options FROM projects WHERE name = ? AND status != ?",
                             (name, REMOVING)).fetchone()
            if row is None:
                return
            options = json.loads(row["options"])
            options["removed"] = sorted(set(options.get("removed") or ()) | replicas)
            db.execute("UPDATE projects SET options = ? WHERE name = ?",
                       (json.dumps(options), name))

    def set_applied(self, name: str, generation: int) -> None:
        """Record that `generation` converged once; never moves backwards."""
        with self._writing() as db:
            db.execute("UPDATE projects SET applied_generation = MAX(applied_generation, ?) "
                       "WHERE name = ?", (generation, name))


COLUMNS = ("name", "stack", "config_files", "working_dir", "options", "status", "generation",
           "applied_generation", "updated_at", "reason", "hashes")
INSERT = (f"INSERT OR REPLACE INTO projects ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' for _ in COLUMNS)})")


def _row(r: ProjectRecord) -> tuple:
    return (r.name, r.stack, json.dumps(list(r.config_files)), r.working_dir,
            json.dumps(_options_json(r.options)), r.status, r.generation,
            r.applied_generation, r.updated_at, r.reason, json.dumps(dict(r.hashes)))


def _options_json(options: model.DiffOptions) -> dict:
    data = dataclasses.asdict(options)
    data["scale"] = dict(options.scale)
    return data


def options_from_json(data: dict) -> model.DiffOptions:
    """DiffOptions from their JSON form; unknown keys are an error that names them."""
    known = {f.name for f in dataclasses.fields(model.DiffOptions)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"options: unknown key(s) {', '.join(unknown)}")
    values = dict(data)
    scale = values.pop("scale", {}) or {}
    if not isinstance(scale, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in scale.items()):
        raise ValueError("options.scale: expected a mapping of service name to replicas >= 0")
    removed = values.pop("removed", []) or []
    if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
        raise ValueError("options.removed: expected a list of replicas (service:NAME:N)")
    submitted_at = values.pop("submitted_at", 0.0)
    if isinstance(submitted_at, bool) or not isinstance(submitted_at, (int, float)):
        raise ValueError("options.submitted_at: expected a time in seconds")
    values["submitted_at"] = float(submitted_at)
    stop_timeout = values.pop("stop_timeout", None)
    if stop_timeout is not None and (isinstance(stop_timeout, bool) or not isinstance(
            stop_timeout, (int, float)) or stop_timeout < 0):
        raise ValueError("options.stop_timeout: expected a number of seconds")
    for key, value in values.items():
        if key != "submitted_at" and not isinstance(value, bool):
            raise ValueError(f"options.{key}: expected true or false, got {value!r}")
    values["removed"] = tuple(sorted(set(removed)))
    return model.DiffOptions(scale=tuple(sorted(scale.items())), stop_timeout=stop_timeout,
                             **values)


def _record(row: sqlite3.Row) -> ProjectRecord:
    return ProjectRecord(
        name=row["name"], stack=row["stack"],
        config_files=tuple(json.loads(row["config_files"])), working_dir=row["working_dir"],
        options=options_from_json(json.loads(row["options"])), status=row["status"],
        generation=row["generation"], applied_generation=row["applied_generation"],
        updated_at=row["updated_at"], reason=row["reason"],
        hashes=tuple(sorted(json.loads(row["hashes"]).items())))
