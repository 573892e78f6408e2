"""Removal ends every process of a container, whether it is killed through its init's pidfd
(a PID namespace of its own) or by runc (a shared PID namespace)."""

from __future__ import annotations

from pathlib import Path

from runtime.oci import lifecycle, observe, runc
from tests.support import cgroupfs, waiting


def _procs(cgroup: str) -> set[int]:
    """Every PID in the container's cgroup, from each hierarchy that lists them."""
    found: set[int] = set()
    for d in cgroupfs.dirs(cgroup):
        procs = Path(d) / "cgroup.procs"
        if procs.exists():
            found |= {int(p) for p in procs.read_text().split()}
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if lifecycle.process_alive(p)}


async def test_children_and_exec_processes_end_with_a_container_of_its_own_pid_namespace(
        lay, make, monkeypatch):
    config = make(command=("sh", "-c", "sleep 1001 & sleep 1002 & exec sleep 1003"))
    await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    await waiting.until(lambda: len(_procs(cgroup)) >= 3, timeout=10, what="three sleeps")
    pids = _procs(cgroup)

    async def no_runc_kill(*args, **kwargs):
        raise AssertionError("the init's pidfd does it: no runc process for the kill")

    monkeypatch.setattr(runc, "kill", no_runc_kill)
    await lifecycle.remove(lay, config.name)
    assert _alive(pids) == set()
    assert await runc.state(lay.runc, config.name) is None
    assert not lay.container_dir(config.name).exists()


async def test_a_container_in_the_hosts_pid_namespace_is_ended_by_runc(lay, make):
    # Its init's death ends nothing else: every process of its cgroup must still go.
    config = make(command=("sh", "-c", "sleep 1004 & exec sleep 1005"), pid="host")
    await lifecycle.run(lay, config)
    cgroup = (await observe.get(lay, config.name)).cgroups_path
    await waiting.until(lambda: len(_procs(cgroup)) >= 2, timeout=10, what="two sleeps")
    pids = _procs(cgroup)
    await lifecycle.remove(lay, config.name)
    assert _alive(pids) == set()
    assert await runc.state(lay.runc, config.name) is None
