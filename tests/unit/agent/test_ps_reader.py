"""`ps` answers while a reconcile runs: it neither waits for the project's lock, which a pass
holds from its look to its last step, nor queues behind the steps' work on the default pool.
(tests/e2e/test_ps_during_up.py shows the answer; a pass waiting for a dependency holds
neither, so only here are both held while ps asks.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path

from controllers import context
from reconciler.agent import ops


def test_ps_answers_with_the_lock_held_and_the_default_pool_busy(tmp_path: Path):
    ctx = context.Context(root=tmp_path / "state", run_dir=tmp_path / "run", agent="t",
                          cgroup_parent="/pcompose-test")
    agent_ops = ops.Ops(ctx)
    release = threading.Event()

    async def main() -> list:
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(pool)
        busy = loop.run_in_executor(None, release.wait)  # the steps' backlog
        try:
            async with agent_ops.serial("p"):  # a pass at work on the project
                return await asyncio.wait_for(agent_ops.views("p"), timeout=10)
        finally:
            release.set()
            await busy

    assert asyncio.run(main()) == []
