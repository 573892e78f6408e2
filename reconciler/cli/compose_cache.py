"""The fast path of a repeated `up -d`: resubmit the last body when nothing it came from changed.

Loading a stack (pydantic) and the agent client (aiohttp) cost most of a second to import. When
the command line, the environment and every file the loader read (and the listings of the
directories it looked in) are as they were, the body `up` would send is the one it sent last
time: send it again over the socket with the standard library and wait until it is applied.
The agent still reconciles, so a stopped container is started as by any `up`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import sys
import time
from pathlib import Path

_recording: list[set[str]] = []
_hooked = False


def _audit(event: str, args: tuple) -> None:
    if _recording and event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode = args[1] or "r"
        if isinstance(mode, str) and "r" in mode and "+" not in mode:
            _recording[-1].add(os.path.abspath(os.fspath(args[0])))


@contextlib.contextmanager
def recording():
    """The paths opened for reading inside the block (an audit hook, which stays installed
    but is idle outside these blocks)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    opened: set[str] = set()
    _recording.append(opened)
    try:
        yield opened
    finally:
        _recording.pop()


def up(args) -> int:
    """`up`: the fast path when it applies, else the full one (compose_up)."""
    if args.detach and not args.watch and not args.wait:
        entry = lookup(args)
        code = resubmit(args, entry) if entry is not None else None
        if code is not None:
            return code
    from reconciler.cli import compose_up

    return compose_up.up(args)


def _key(args) -> str:
    inputs = {k: getattr(args, k, None) for k in (
        "files", "project_name", "profiles", "env_files", "project_directory", "root",
        "run_dir", "services", "scale", "force_recreate", "no_recreate", "remove_orphans",
        "host_netns")}
    inputs["cwd"] = os.getcwd()
    inputs["environ"] = sorted(os.environ.items())
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _dir(args) -> Path:
    return Path(args.run_dir) / "cli-cache"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _listing(directory: str) -> str | None:
    try:
        return hashlib.sha256("\0".join(sorted(os.listdir(directory))).encode()).hexdigest()
    except OSError:
        return None


def inputs(opened: set[str]) -> set[str]:
    """Of the files opened while loading, those the stack came from (not Python's own)."""
    return {p for p in opened if not p.startswith((sys.prefix, sys.base_prefix, "/proc/",
                                                   "/sys/", "/dev/"))
            and "/site-packages/" not in p and not p.endswith((".py", ".pyc", ".so"))}


def store(args, opened: set[str], name: str, body: dict, warnings=()) -> None:
    """Remember what this `up` read, warned about and sent; a later identical `up -d` may
    reuse it."""
    files = {p: _digest(p) for p in sorted(inputs(opened))}
    dirs = {d: _listing(d) for d in sorted({os.getcwd(), body["working_dir"],
                                            *(os.path.dirname(p) for p in files)})}
    entry = {"name": name, "body": body, "files": files, "dirs": dirs, "containers": [],
             "warnings": [str(w) for w in warnings]}
    _write(args, _key(args), entry)


def remember_containers(args, names: list[str]) -> None:
    key = _key(args)
    entry = _read(args, key)
    if entry is not None:
        entry["containers"] = names
        _write(args, key, entry)


def forget(args, name: str) -> None:
    """After `down`: the next `up` of this project takes the full path."""
    try:
        paths = list(_dir(args).iterdir())
    except OSError:
        return
    for path in paths:
        entry = _read_path(path)
        if entry is None or entry.get("name") == name:
            path.unlink(missing_ok=True)


def _write(args, key: str, entry: dict) -> None:
    try:
        _dir(args).mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = _dir(args) / f"{key}.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, _dir(args) / f"{key}.json")
    except OSError:
        pass  # only a cache: the next `up` takes the full path


def _read(args, key: str) -> dict | None:
    return _read_path(_dir(args) / f"{key}.json")


def _read_path(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lookup(args) -> dict | None:
    """The entry of this very command line, if nothing it was made from has changed."""
    entry = _read(args, _key(args))
    if entry is None:
        return None
    if any(_digest(p) != d for p, d in entry["files"].items()):
        return None
    if any(_listing(d) != h for d, h in entry["dirs"].items()):
        return None
    return entry


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("agent", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def _call(conn: _UnixConnection, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data,
                 headers={"Content-Type": "application/json"} if data else {})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    if response.status >= 400:
        raise LookupError((payload or {}).get("error", f"HTTP {response.status}"))
    return payload


def resubmit(args, entry: dict, timeout: float = 600.0) -> int | None:
    """PUT the cached body and wait until it is applied, printing what changed; None when no
    agent answers (the caller then takes the full path, which starts one)."""
    from reconciler.cli import common, render

    name, body = entry["name"], entry["body"]
    conn = _UnixConnection(str(Path(args.run_dir) / "agent.sock"), timeout=10.0)
    try:
        began = time.time()
        info = _call(conn, "PUT", f"/v1/projects/{name}", body)
        for warning in entry.get("warnings", ()):
            common.print_warning(warning)  # the same files warn the same way every time
        generation, deadline = info["generation"], time.monotonic() + timeout
        while True:
            project = next((p for p in _call(conn, "GET", "/v1/projects")
                            if p["name"] == name), None)
            if project and project["applied_generation"] >= generation:
                break
            if project and project["generation"] == generation and _gave_up(
                    conn, name, project, began):
                raise common.UserFacingError(f"project {name}: {project['reason']}")
            if time.monotonic() > deadline:
                raise common.UserFacingError(f"project {name} did not converge within "
                                             f"{timeout:g}s")
            time.sleep(0.01)
        steps = _call(conn, "GET", f"/v1/projects/{name}")["steps"]
    except (OSError, http.client.HTTPException):
        return None
    except LookupError as error:
        raise common.UserFacingError(f"project {name}: {error}") from None
    finally:
        conn.close()
    progress, printed = render.Progress(), set()
    for event in (_Event(e) for e in steps.values()):
        if event.time >= began:
            for line in render.step_lines(name, event, {}):
                progress.line(line)
                printed.add(line.rpartition("  ")[0])
    for container in entry["containers"]:
        if f"Container {container}" not in printed:
            progress.line(f"Container {container}  Running")
    return 0


def _gave_up(conn, name: str, project: dict, began: float) -> bool:
    """Failed for good, or a step of this submission failed and the agent will retry later
    (compose_up._wait_applied's rule)."""
    if project["status"] == "failed":
        return True
    if project["status"] != "retrying":
        return False
    steps = _call(conn, "GET", f"/v1/projects/{name}")["steps"].values()
    return any(e.get("status") == "failed" and e.get("time", 0) >= began for e in steps)


class _Event:
    """A step event as GET /v1/projects/{name} gives it (events.Event without its import)."""

    def __init__(self, data: dict) -> None:
        self.type, self.status = data.get("type", ""), data.get("status", "")
        self.resource, self.action = data.get("resource", ""), data.get("action", "")
        self.message, self.time = data.get("message", ""), data.get("time", 0.0)
