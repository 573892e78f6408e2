"""Container lifecycle through conmon and runc: create, start, stop, kill, pause, update, remove,
exit status."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import itertools
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from runtime import labels, statefiles
from runtime.cgroups import drivers, model as cgroups_model
from runtime.oci import attach, conmon, facts, layout, model, runc, spec

log = structlog.get_logger(__name__)


class ContainerExists(RuntimeError):
    """A container of that name exists with another config: the caller must remove it first."""


@dataclass(frozen=True)
class ExitStatus:
    code: int
    oom_killed: bool
    started_at: dt.datetime | None
    finished_at: dt.datetime


def ensure_dirs(lay: layout.Layout) -> None:
    for d in (lay.run_dir, lay.root):  # made here first by tests and by in-process verbs
        statefiles.private_dir(d)
    for d in (lay.run_dir / "runc", lay.exit_dir, lay.socket_dir, lay.root / "containers"):
        statefiles.private_dir(d)


async def create(lay: layout.Layout, config: model.ContainerConfig,
                 driver: drivers.Driver | None = None) -> int:
    """Write the bundle and have conmon run `runc create`; return the container's PID.

    Idempotent: an existing container with the same config hash is kept.
    """
    cid = config.cid
    # Skip a runc call when runc has no state dir for it.
    existing = await runc.state(lay.runc, cid) if known(lay, cid) else None
    if existing is not None:
        if existing.get("annotations", {}).get(labels.OWN_CONFIG_HASH) == config.identity.config_hash:
            return int(existing.get("pid") or 0)
        raise ContainerExists(f"{config.name}: exists with another config; remove it first")
    driver = driver or drivers.detect()
    await asyncio.to_thread(write_bundle, lay, config, driver)
    pid = await _launch(lay, cid, config.tty, config.stdin_open, config.name)
    log.info("container.created", container=config.name, id=cid, pid=pid,
             project=config.identity.project)
    return pid


async def _launch(lay: layout.Layout, cid: str, terminal: bool, stdin: bool = False,
                  name: str = "") -> int:
    return await conmon.launch(conmon.Launch(
        cid=cid, bundle=lay.bundle(cid), workdir=lay.container_dir(cid),
        exit_dir=lay.exit_dir, persist_dir=lay.persist_dir(cid), log_path=lay.log_path(cid),
        runc_root=lay.runc.root, socket_dir=lay.socket_dir, log_size_max=lay.log_size_max,
        runtime=lay.runc_binary, binary=lay.conmon_binary, terminal=terminal, stdin=stdin,
        name=name or name_of(lay, cid),
    ))


def write_bundle(lay: layout.Layout, config: model.ContainerConfig, driver: drivers.Driver) -> None:
    """Lay out the container's dir: config.json, generated /etc files, persist dir (blocking)."""
    ensure_dirs(lay)
    config, host, warnings = facts.gather(lay, config, driver)
    for warning in warnings:
        log.warning("container.limit_adjusted", container=config.name, reason=warning)
    document = spec.build(config, host)  # raises on bad input before anything is written
    cid = config.cid
    cdir = lay.container_dir(cid)
    if cdir.exists():
        shutil.rmtree(cdir)  # leftovers of a container runc no longer knows
    lay.exit_file(cid).unlink(missing_ok=True)
    statefiles.private_dir(cdir)
    statefiles.write(lay.name_file(cid), config.name)
    # 0755 and 0644 below: the container's own user (`user: "1000"`) reads /etc/hosts and
    # friends through their bind mounts, which skip the private dirs above them.
    lay.etc_dir(cid).mkdir(mode=0o755)
    lay.persist_dir(cid).mkdir(mode=0o700)
    nameservers = facts.host_nameservers() if config.network == "host" else ()
    for name, text in spec.etc_files(config, nameservers).items():
        statefiles.write(lay.etc_dir(cid) / name, text, mode=0o644)
    # The environment (secrets passed as variables among it): root's only.
    statefiles.write(cdir / "config.json", spec.dumps(document))


async def start(lay: layout.Layout, cid: str, *, just_created: bool = False) -> None:
    """Start a created or exited container (same bundle, same log); a running one is left alone.
    `just_created`: the caller made it a moment ago, so its state is known (one runc call less)."""
    if just_created:
        began = _now()
        await runc.start(lay.runc, cid)
        _record_start(lay, cid, began)
        return
    state = await runc.state(lay.runc, cid)
    if state is None:
        raise runc.NotFound(("start", cid), 1, f"container {cid} does not exist")
    if state["status"] == "stopped":
        await _recreate(lay, cid)
    elif state["status"] != "created":
        return
    began = _now()
    await runc.start(lay.runc, cid)
    _record_start(lay, cid, began)


async def _recreate(lay: layout.Layout, cid: str) -> None:
    """runc cannot start a stopped container again: delete its runc state and create it anew
    from the bundle we kept (the log goes on in the same file)."""
    await _wait_conmon_gone(lay, cid)
    await runc.delete(lay.runc, cid, force=True)
    lay.exit_file(cid).unlink(missing_ok=True)
    for stale in ("oom", "persist/oom", "persist/exit"):
        (lay.container_dir(cid) / stale).unlink(missing_ok=True)
    document = json.loads((lay.bundle(cid) / "config.json").read_text())
    pid = await _launch(lay, cid, bool(document["process"].get("terminal")))
    log.info("container.recreated", **_who(lay, cid), pid=pid)


def _record_start(lay: layout.Layout, cid: str, began: dt.datetime) -> None:
    # The time before `runc start`: a short-lived process may have exited when it returns.
    statefiles.write(lay.container_dir(cid) / "started_at", began.isoformat())
    log.info("container.started", **_who(lay, cid))


async def run(lay: layout.Layout, config: model.ContainerConfig, driver: drivers.Driver | None = None) -> int:
    """create + start; an existing container with the same config is started if it is not yet."""
    fresh = not known(lay, config.cid)
    pid = await create(lay, config, driver)
    if fresh:
        began = _now()
        await runc.start(lay.runc, config.cid)
        _record_start(lay, config.cid, began)
    else:
        await start(lay, config.cid)
    return pid


async def kill(lay: layout.Layout, cid: str, sig: str = "SIGKILL") -> None:
    """Signal the container's main process (runc thaws a paused container around SIGKILL)."""
    await runc.kill(lay.runc, cid, spec.normalize_signal(sig))
    log.info("container.signalled", **_who(lay, cid), signal=sig)


async def stop(lay: layout.Layout, cid: str, timeout: float | None = None,
               sig: str | None = None) -> ExitStatus | None:
    """stop_signal, then SIGKILL to every process after the grace period; None if it never ran."""
    state = await runc.state(lay.runc, cid)
    if state is None:
        return None
    if state["status"] in ("stopped", "created"):
        if state["status"] == "created":
            await runc.delete(lay.runc, cid, force=True)
        return await wait(lay, cid, timeout=5.0)
    return await _stop_running(lay, cid, state, timeout, sig)


async def stop_before_removal(lay: layout.Layout, cid: str, timeout: float | None = None) -> None:
    """What docker does before it removes a container: `stop` (the stop signal, SIGKILL to
    every process after the grace period or `timeout`), so that a database ends cleanly
    instead of needing crash recovery at its next start.

    Nothing to wait for, and no runc call, when the container has exited or its stop signal
    is SIGKILL (`remove` kills at once anyway). A container whose conmon is gone is left to
    `remove` too: no one would record its exit, so a stop could only wait out its grace."""
    if not known(lay, cid) or has_exited(lay, cid) or monitor_pid(lay, cid) is None:
        return
    notes = _bundle_config(lay, cid).get("annotations") or {}
    if spec.normalize_signal(notes.get(labels.OWN_STOP_SIGNAL, "SIGTERM")) == "SIGKILL":
        return
    state = await runc.state(lay.runc, cid)
    if state is not None and state["status"] in ("running", "paused"):
        await _stop_running(lay, cid, state, timeout, None)


async def _stop_running(lay: layout.Layout, cid: str, state: dict, timeout: float | None,
                        sig: str | None) -> ExitStatus | None:
    notes = state.get("annotations", {})
    sig = spec.normalize_signal(sig or notes.get(labels.OWN_STOP_SIGNAL, "SIGTERM"))
    grace = timeout if timeout is not None else float(notes.get(labels.OWN_STOP_GRACE, "10"))
    if state["status"] == "paused":
        await runc.resume(lay.runc, cid)  # frozen tasks do not handle signals
    await _signal_quietly(lay, cid, sig, all_processes=False)
    status = await wait(lay, cid, timeout=grace)
    if status is None:
        await _signal_quietly(lay, cid, "SIGKILL", all_processes=True)
        status = await wait(lay, cid, timeout=30.0)
    log.info("container.stopped", **_who(lay, cid), signal=sig, exit_code=status.code if status else None)
    return status


async def _signal_quietly(lay: layout.Layout, cid: str, sig: str, all_processes: bool) -> None:
    try:
        await runc.kill(lay.runc, cid, sig, all_processes=all_processes)
    except runc.RuncError as err:
        # The process may have exited between our state read and the signal.
        if "not running" not in err.stderr and "process already finished" not in err.stderr:
            raise


async def pause(lay: layout.Layout, cid: str) -> None:
    await runc.pause(lay.runc, cid)
    log.info("container.paused", **_who(lay, cid))


async def unpause(lay: layout.Layout, cid: str) -> None:
    await runc.resume(lay.runc, cid)
    log.info("container.unpaused", **_who(lay, cid))


async def update(lay: layout.Layout, cid: str, resources: cgroups_model.Resources,
                 driver: drivers.Driver | None = None) -> None:
    """Change limits live (`runc update`), without a restart."""
    driver = driver or drivers.detect()
    blkio = driver.supports("blkio", "blkio.weight") or driver.supports("blkio", "blkio.bfq.weight")
    await runc.update(lay.runc, cid, spec.resources(resources, blkio))
    log.info("container.updated", **_who(lay, cid))


async def remove(lay: layout.Layout, cid: str, *, stop: bool = False,
                 timeout: float | None = None) -> None:
    """Kill every process, delete runc state and cgroup, remove the files; a missing container
    is fine. `stop`: first as stop_before_removal (with `timeout` for the grace period);
    without it the kill comes at once, as for a container that was never completely made."""
    who = _who(lay, cid)
    if stop:
        await stop_before_removal(lay, cid, timeout)
    if known(lay, cid) and not _kill_by_pidfd(lay, cid):
        with contextlib.suppress(runc.NotFound):
            await _signal_quietly(lay, cid, "SIGKILL", all_processes=True)
    if known(lay, cid):
        # Once conmon has seen the exit, runc finds the container stopped and deletes it at
        # once; `delete --force` of a live one sleeps 100 ms before it looks again.
        await _wait_conmon_gone(lay, cid)
        await runc.delete(lay.runc, cid, force=True)
    await _wait_conmon_gone(lay, cid)
    await asyncio.to_thread(_remove_files, lay, cid)
    log.info("container.removed", **who)


_STATE_PID = re.compile(r'"init_process_pid":(\d+)')
_STATE_START = re.compile(r'"init_process_start":(\d+)')
_STATE_FREEZER = re.compile(r'"freezer":"((?:[^"\\]|\\.)*)"')
_OWN_PID_NS = '{"type":"NEWPID","path":""}'


def _kill_by_pidfd(lay: layout.Layout, cid: str) -> bool:
    """SIGKILL to the container's init through a pidfd, without a runc process (each costs
    ~15 ms of CPU, and a removal ran two): what `runc kill --all` achieves for a container
    with a PID namespace of its own, where the init's death ends every process in it. The
    init is the one runc recorded only if its start time still matches after the pidfd is
    open, as runc checks it. False when this does not do (a shared PID namespace, a frozen
    or unreadable container): the caller asks runc."""
    try:
        text = (lay.run_dir / "runc" / cid / "state.json").read_text()
    except OSError:
        return False
    # Searched, not parsed: the file is ~33 KB (the seccomp filter), and json.loads of it cost
    # more of the agent's time than the runc call it replaces. The keys are the structure's:
    # inside a string value a quote is escaped, so no label or variable can fake them.
    pid_found, start_found = _STATE_PID.search(text), _STATE_START.search(text)
    paths = text.find('"cgroup_paths":{')  # the config before it has a "freezer" of its own
    freezer = _STATE_FREEZER.search(text, paths) if paths >= 0 else None
    if pid_found is None or start_found is None or freezer is None or _OWN_PID_NS not in text:
        return False
    try:
        if Path(json.loads(f'"{freezer[1]}"'), "freezer.state").read_text().strip() != "THAWED":
            return False
    except (OSError, ValueError):
        return False
    pid, start = int(pid_found[1]), int(start_found[1])
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # the init is gone, and with it its namespace's processes
    try:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if int(stat.rsplit(")", 1)[1].split()[19]) != start:
            return True  # its PID is another process's now: the init ended
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass  # ended between the open and the signal
    finally:
        os.close(fd)
    return True


def known(lay: layout.Layout, cid: str) -> bool:
    """runc keeps a state dir per container: without one, runc does not know `cid`."""
    return (lay.run_dir / "runc" / cid).exists()


def _who(lay: layout.Layout, cid: str) -> dict[str, str]:
    """A container as log events name it: its name, and its id when that differs."""
    name = name_of(lay, cid)
    return {"container": name} if name == cid else {"container": name, "id": cid}


def known_ids(lay: layout.Layout) -> list[str]:
    """Every container runc knows under this layout (no runc call: its state dirs)."""
    try:
        return sorted(e.name for e in os.scandir(lay.run_dir / "runc") if e.is_dir())
    except FileNotFoundError:
        return []


# (state root, id) -> name, as read from the name file. An id's name never changes (only
# write_bundle writes it, and an id is its container's for life), and every create looks up
# its name among all ids: read once, a stack of 1,000 is not 1,000 file reads per create.
_names: dict[tuple[str, str], str] = {}


def name_of(lay: layout.Layout, cid: str) -> str:
    """The container's name; a container made before ids were given is named by its id."""
    key = (str(lay.root), cid)
    known_name = _names.get(key)
    if known_name is not None:
        return known_name
    try:
        name = lay.name_file(cid).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return cid
    if not name:
        return cid
    _names[key] = name
    return name


def ids_named(lay: layout.Layout, name: str) -> list[str]:
    """The ids of the containers runc knows by that name (one, unless something is amiss)."""
    return [cid for cid in known_ids(lay) if name_of(lay, cid) == name]


def _remove_files(lay: layout.Layout, cid: str) -> None:
    _names.pop((str(lay.root), cid), None)
    shutil.rmtree(lay.container_dir(cid), ignore_errors=True)
    lay.exit_file(cid).unlink(missing_ok=True)
    for leftover in lay.socket_dir.glob(f"{cid}*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def remove_project_cgroup(lay: layout.Layout, project: str, driver: drivers.Driver | None = None) -> bool:
    """Remove the project's cgroup dirs after its last container is gone; False (and nothing
    removed) while a container, running or not, still has its cgroup in it."""
    if _has_child_cgroups(lay.project_cgroup(project)):
        return False
    try:
        (driver or drivers.detect()).remove(lay.project_cgroup(project))
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
        log.info("cgroup.kept", project=project, reason="a container still runs in it")
        return False
    return True


def _has_child_cgroups(path: str, root: Path = Path("/sys/fs/cgroup")) -> bool:
    """A dir below `path` in any hierarchy (v1: one per controller; v2: the root itself):
    runc deletes a container's cgroup only with the container."""
    rel = path.strip("/")
    hierarchies = [root, *(h for h in root.iterdir() if h.is_dir() and not h.is_symlink())]
    for base in hierarchies:
        try:
            with os.scandir(base / rel) as entries:
                if any(e.is_dir(follow_symlinks=False) for e in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            continue
    return False


def _bundle_config(lay: layout.Layout, cid: str) -> dict:
    """The container's OCI config.json; {} without a bundle."""
    try:
        return json.loads((lay.bundle(cid) / "config.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def project_of(lay: layout.Layout, cid: str) -> str | None:
    """The project annotation of the container's bundle; None without a bundle."""
    return (_bundle_config(lay, cid).get("annotations") or {}).get(labels.OWN_PROJECT)


async def _wait_conmon_gone(lay: layout.Layout, cid: str, timeout: float = 10.0) -> None:
    """conmon writes the exit file and log after the container exits: let it finish first.
    Woken by a pidfd the moment conmon ends (no polling: a poll's sleep was most of the
    wait once the container had died)."""
    pid = monitor_pid(lay, cid)
    if pid is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # Still that conmon after the open: the pidfd is of that process, not of a reused PID.
        if monitor_pid(lay, cid) != pid:
            return
        if not await _ended(fd, timeout):
            signal.pidfd_send_signal(fd, signal.SIGKILL)  # our own conmon, by pidfd
    finally:
        os.close(fd)


async def _ended(pidfd: int, timeout: float) -> bool:
    """Whether the process of `pidfd` ends (a zombie counts) within `timeout` seconds: a
    pidfd turns readable when its process ends."""
    try:
        await asyncio.wait_for(attach.readable(pidfd), timeout)
        return True
    except TimeoutError:
        return False


def monitor_pid(lay: layout.Layout, cid: str) -> int | None:
    """The PID of the conmon that watches `cid`, if it still runs. A container whose conmon
    died (killed, or killed with the agent before it read conmon's answer) has no one to
    take its output or record its exit: it must be made again. The PID in conmon's pidfile
    counts only while it is that conmon: a dead one's PID may be another process's by now,
    and a zombie's cmdline is empty, so a conmon that ended does not match either."""
    try:
        with open(lay.container_dir(cid) / "conmon.pid", "rb") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    pairs = set(itertools.pairwise(argv))
    mine = (b"-c", cid.encode()) in pairs and (b"--exit-dir", bytes(lay.exit_dir)) in pairs
    return pid if mine else None


def process_alive(pid: int) -> bool:
    """Running, not a zombie: conmon's parent is PID 1, which reaps it in its own time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def exit_status(lay: layout.Layout, cid: str, cgroup: str | None = None) -> ExitStatus | None:
    """Read conmon's exit file; None while the container runs (or never ran). `cgroup`: the
    container's cgroup path when the caller has it (runc's state carries it in an
    annotation), else read from its bundle."""
    path = lay.exit_file(cid)
    try:
        code = int(path.read_text().strip())
        finished = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    except (FileNotFoundError, ValueError):
        return None
    return ExitStatus(code=code, oom_killed=oom_killed(lay, cid, cgroup),
                      started_at=started_at(lay, cid), finished_at=finished)


def oom_killed(lay: layout.Layout, cid: str, cgroup: str | None = None) -> bool:
    """conmon's `oom` file, or the cgroup's OOM-kill counter: a killed child may leave exit code 0."""
    cdir = lay.container_dir(cid)
    if (cdir / "oom").exists() or (lay.persist_dir(cid) / "oom").exists():
        return True
    cgroup = cgroup or _cgroup_path(lay, cid)
    if cgroup:
        driver = drivers.detect()
        if driver.exists(cgroup) and driver.oom_kills(cgroup) > 0:
            return True
    return False


def started_at(lay: layout.Layout, cid: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat((lay.container_dir(cid) / "started_at").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cgroup_path(lay: layout.Layout, cid: str) -> str | None:
    return _bundle_config(lay, cid).get("linux", {}).get("cgroupsPath")


def has_exited(lay: layout.Layout, cid: str) -> bool:
    """For logs.follow(done=...): conmon has written the exit code."""
    return lay.exit_file(cid).exists()


async def wait(lay: layout.Layout, cid: str, timeout: float | None = None) -> ExitStatus | None:
    """Wait for conmon's exit file; None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = exit_status(lay, cid)
        if status is not None:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.02)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
