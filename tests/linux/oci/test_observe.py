"""Observed state read back from runc and annotations: projects, services, replicas, exits."""

from __future__ import annotations

import asyncio
import dataclasses

from runtime.oci import exec as oci_exec, lifecycle, model, observe
from tests.linux.oci import helpers
from tests.support import waiting


async def test_list_by_project_and_service_with_status(lay, make, unique):
    other = model.Identity(project=f"{unique}x", service="db", replica=1, config_hash="h9")
    running = [make(service="web", replica=n, command=("sleep", "1000")) for n in (1, 2)]
    for config in running:
        await lifecycle.run(lay, config)
    done = make(service="job", command=("sh", "-c", "exit 4"), identity=model.Identity(unique, "job", 1, "hj", oneoff=True))
    await helpers.run_to_exit(lay, done)
    foreign = dataclasses.replace(make(service="db", command=("sleep", "1000")), name=f"{unique}x-db-1", identity=other)
    await lifecycle.create(lay, foreign)

    mine = await observe.list_containers(lay, project=unique)
    assert [(o.service, o.replica, o.status) for o in mine] == [("job", 1, "exited"), ("web", 1, "running"), ("web", 2, "running")]
    job = mine[0]
    assert (job.exit.code, job.oneoff, job.pid, job.config_hash) == (4, True, 0, "hj")
    assert [o.id for o in await observe.list_containers(lay, project=unique, service="web")] == [c.name for c in running]
    [db] = await observe.list_containers(lay, project=f"{unique}x")
    assert (db.status, db.config_hash, db.cgroups_path) == ("created", "h9", f"{lay.cgroup_parent}/{unique}x/{unique}x-db-1")
    assert sorted(await observe.top(lay, running[0].name)) == [mine[1].pid]
    assert await observe.get(lay, "no-such-container") is None
    assert lifecycle.remove_project_cgroup(lay, f"{unique}x") is False  # busy: kept
    await lifecycle.remove(lay, foreign.name)
    assert lifecycle.remove_project_cgroup(lay, f"{unique}x") is True


async def test_exits_are_reported_as_container_ids(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    stop = asyncio.Event()
    seen: list[str] = []

    async def watch() -> None:
        async for cid in observe.watch_exits(lay, stop):
            seen.append(cid)
            if cid == config.name:
                stop.set()

    watcher = asyncio.create_task(watch())
    # A file of our own in the exit dir, written until the watch reports it: then it watches.
    probe = lay.exit_dir / "probe"
    lay.exit_dir.mkdir(parents=True, exist_ok=True)

    def armed() -> bool:
        probe.write_text("0")
        return "probe" in seen

    await waiting.until(armed, timeout=10, what="the exit watch set up", interval=0.1)
    probe.unlink()
    await lifecycle.kill(lay, config.name)
    await asyncio.wait_for(watcher, 10)
    assert [cid for cid in seen if cid != "probe"] == [config.name]
    assert lifecycle.exit_status(lay, config.name).code == 137


async def test_exec_detached_runs_on(lay, make):
    config = make(command=("sleep", "1000"))
    await lifecycle.run(lay, config)
    await oci_exec.detach(lay, config.name, ["sh", "-c", "sleep 0.2; echo done > /tmp/flag; sleep 1000"])

    async def flag():
        result = await oci_exec.run(lay, config.name, ["cat", "/tmp/flag"])
        return result.exit_code == 0 and result

    result = await waiting.until(flag, what="the detached process's flag")
    assert result.stdout == b"done\n"
    assert len(await observe.top(lay, config.name)) == 2  # the main process and the detached one
