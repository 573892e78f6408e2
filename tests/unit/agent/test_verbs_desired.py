"""What `create`, `scale` and `rm` leave in the desired state: the submission's options, the
replicas a user removed, and what a later submission keeps of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reconciler.agent import store
from tests.unit.agent.test_api import agent, dirs, machine  # noqa: F401 (fixtures)
from tests.unit.agent.test_converge import load, project_dir, stream  # noqa: F401
from tests.unit.agent.test_store import record


def test_removed_replicas_are_kept_without_a_new_generation(tmp_path: Path):
    st = store.Store(tmp_path)
    st.put(record())
    st.hold_removed("shop", {"service:web:2"})
    st.hold_removed("shop", {"service:web:1", "service:web:2"})
    st.hold_removed("nope", {"service:web:1"})  # an unknown project: nothing to hold
    again = store.Store(tmp_path).get("shop")
    assert again.options.removed == ("service:web:1", "service:web:2")
    assert again.generation == 1 and st.get("nope") is None
    st.mark_removing("shop")
    st.hold_removed("shop", {"service:db:1"})  # a project going away wants nothing anyway
    assert st.get("shop").options.removed == ()


def _options(root: Path) -> store.model.DiffOptions:
    db = store.Store(root)
    try:
        return db.get("shop").options
    finally:
        db.close()


async def test_a_submission_of_some_services_keeps_the_others_scale_and_removals(
        agent, dirs, project_dir):  # noqa: F811
    async def up(**options) -> None:
        lines = await asyncio.to_thread(stream, dirs[1], "/v1/up", {
            "load": load(project_dir, profiles=["extra"]), "options": options})
        assert lines[-1]["ok"], lines

    await up(scale=["worker=3"])
    await up(services=["web"], scale=["web=2"], keep_stopped=True)
    options = _options(dirs[0])
    assert options.scale == (("web", 2), ("worker", 3))
    assert not options.start_stopped and not options.no_start

    db = store.Store(dirs[0])
    db.hold_removed("shop", {"service:web:1", "service:worker:2"})
    db.close()
    await up(services=["web"], no_start=True)  # `create web`
    options = _options(dirs[0])
    assert options.removed == ("service:worker:2",) and options.scale == (("worker", 3),)
    assert options.no_start and not options.start_stopped
    await up()  # a whole `up` wants everything again, as the stack file says
    options = _options(dirs[0])
    assert (options.removed, options.scale, options.start_stopped) == ((), (), True)
