"""Named network namespaces bind-mounted under `<run_dir>/netns/`, so they outlive processes;
one pyroute2 socket per namespace, and running small things (sysctls, sockets) inside one."""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
import socket as pysocket
import threading
from pathlib import Path

import structlog
from pyroute2 import IPRoute

log = structlog.get_logger(__name__)

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_WORKER_NAME = "pcompose-netlink"
_worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=_WORKER_NAME)
_sockets: dict[str | None, IPRoute] = {}
_home: int | None = None


def path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "netns" / name


def exists(ns: Path) -> bool:
    """True when `ns` is a namespace mount (its device differs from its directory's)."""
    try:
        return os.stat(ns).st_dev != os.stat(Path(ns).parent).st_dev
    except FileNotFoundError:
        return False


def _in_thread(fn):
    """Run `fn` in a short-lived thread and return its result (namespace changes die with it)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _check(rc: int, what: str, ns: Path) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {ns}: {os.strerror(err)}")


def ensure(ns: Path) -> Path:
    """Make a new network namespace mounted at `ns`; an existing one is kept."""
    ns = Path(ns)
    if exists(ns):
        return ns
    ns.parent.mkdir(parents=True, exist_ok=True)
    ns.touch()

    def create():
        # unshare in a throwaway thread: only that thread moves, the agent stays where it is.
        _check(_libc.unshare(CLONE_NEWNET), "unshare", ns)
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        _check(_libc.mount(src, str(ns).encode(), None, MS_BIND, None), "mount", ns)

    try:
        _in_thread(create)
    except OSError:
        ns.unlink(missing_ok=True)
        raise
    on_worker(_loopback_up)(ns)
    log.info("netns.created", netns=str(ns))
    return ns


def _loopback_up(ns: Path) -> None:
    route(ns).link("set", ifname="lo", state="up")


def remove(ns: Path) -> None:
    """Unmount and delete `ns` (its links go with it); a missing one is success."""
    ns = Path(ns)
    close(ns)
    if exists(ns):
        _check(_libc.umount2(str(ns).encode(), MNT_DETACH), "umount", ns)
        log.info("netns.removed", netns=str(ns))
    ns.unlink(missing_ok=True)


def close(ns: Path | None) -> None:
    """Drop the cached netlink socket of `ns`."""
    ipr = on_worker(lambda: _sockets.pop(str(ns) if ns else None, None))()
    if ipr is not None:
        on_worker(ipr.close)()


def on_worker(fn):
    """`fn` wrapped to run on the one netlink thread: pyroute2 keeps sockets and event loops per
    thread, so all of them live on that thread and calls to it are serialized."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if threading.current_thread().name.startswith(_WORKER_NAME):
            return fn(*args, **kwargs)
        return _worker.submit(fn, *args, **kwargs).result()

    return call


def route(ns: Path | None) -> IPRoute:
    """The namespace's one IPRoute socket (None: the agent's own namespace); only on the worker."""
    assert threading.current_thread().name.startswith(_WORKER_NAME), "netlink outside the worker thread"
    key = str(ns) if ns else None
    ipr = _sockets.get(key)
    if ipr is None:
        global _home
        if _home is None:
            _home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        if ns is not None:
            _enter(ns)
        try:
            # The socket is made now, in the namespace the thread is in, and stays there.
            ipr = IPRoute()
        finally:
            if ns is not None:
                _check(_libc.setns(_home, CLONE_NEWNET), "setns back", Path("/proc/self/ns/net"))
        _sockets[key] = ipr
    return ipr


def _enter(ns: Path) -> None:
    fd = os.open(ns, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), "setns", ns)
    finally:
        os.close(fd)


def run_in(ns: Path | None, fn):
    """Call `fn()` with the calling thread inside `ns` (None: here) and return what it returns."""
    if ns is None:
        return fn()

    def inside():
        _enter(ns)
        return fn()

    return _in_thread(inside)


def sysctl(ns: Path | None, key: str, value: str) -> None:
    """Write `net.x.y` inside `ns`: sysctls are files, not netlink, and per namespace."""

    def write():
        file = Path("/proc/sys") / key.replace(".", "/")
        if file.read_text().strip() != value:
            file.write_text(value)

    run_in(ns, write)


def socket(ns: Path | None, family: int, kind: int) -> pysocket.socket:
    """A socket that lives in `ns`: it keeps that namespace wherever it is used later."""
    return run_in(ns, lambda: pysocket.socket(family, kind))
