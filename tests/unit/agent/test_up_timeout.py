"""`up -t N` travels with the submission's options to the steps that stop containers to
recreate or remove them; a wrong value is refused before anything is stored."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.agent import store, wire
from tests.unit.agent.test_api import agent, dirs, machine  # noqa: F401 (fixtures)
from tests.unit.agent.test_converge import load, project_dir, stream  # noqa: F401


async def test_the_timeout_of_up_is_kept_with_the_submission(agent, dirs, project_dir):
    await asyncio.to_thread(stream, dirs[1], "/v1/up",
                            {"load": load(project_dir), "options": {"timeout": 3}})
    assert store.Store(dirs[0]).get("shop").options.stop_timeout == 3.0
    await asyncio.to_thread(stream, dirs[1], "/v1/up", {"load": load(project_dir), "options": {}})
    assert store.Store(dirs[0]).get("shop").options.stop_timeout is None


@pytest.mark.parametrize("bad", [-1, "10", True])
async def test_a_wrong_timeout_is_refused(agent, dirs, project_dir, bad):
    with pytest.raises(wire.ApiError, match="options.timeout: expected a number of seconds"):
        await asyncio.to_thread(stream, dirs[1], "/v1/up",
                                {"load": load(project_dir), "options": {"timeout": bad}})
    assert store.Store(dirs[0]).get("shop") is None


def test_stored_options_without_a_timeout_still_load():
    options = store.options_from_json({"start_stopped": True, "scale": {}})
    assert options.stop_timeout is None
    with pytest.raises(ValueError, match="options.stop_timeout"):
        store.options_from_json({"stop_timeout": -2})
