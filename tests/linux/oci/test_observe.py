"""Observed state read back from runc and annotations: projects, services, replicas, exits."""

from __future__ import annotations

import dataclasses

from runtime.oci import lifecycle, model, observe
from tests.linux.oci import helpers


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
