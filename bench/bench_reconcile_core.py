"""The reconciler's own overhead, without containers: diff of a converged project, the
executor on no-op steps, a full reconcile pass on the fake machine, the agent's API round
trip over its unix socket and the start of a background agent. Part of the no-op `up` budget.

Run as root from the repository root:  .venv/bin/python bench/bench_reconcile_core.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.agent import client, daemon, launcher, logs  # noqa: E402
from reconciler.engine import executor, loop  # noqa: E402
from reconciler.plan import diff, model, plans  # noqa: E402
from tests.unit.engine import fakes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-reconcile-core.md"
P = "bench"


def desired_state(n: int) -> model.DesiredState:
    services = tuple(model.DesiredService(
        P, f"s{i:03d}", f"hash{i}", "busybox", "sha256:1", networks=("default",),
        depends_on=(model.Dependency(f"s{i - 1:03d}"),) if i else (),
        limits=model.Limits(memory=64 << 20)) for i in range(n))
    return model.DesiredState(P, services, (model.DesiredNetwork("default", f"{P}_default"),))


def converged(state: model.DesiredState) -> model.ObservedState:
    return model.ObservedState(
        tuple(model.ObservedContainer(f"{P}-{s.name}-1", P, s.name, 1, s.config_hash,
                                      s.image_id, model.ContainerState.RUNNING,
                                      limits=s.limits) for s in state.services),
        (model.ObservedNetwork(f"{P}_default", P, "default"),))


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.2f} ms, min {min(ms):.2f} ms, max {max(ms):.2f} ms"


async def noop(step: plans.Step) -> None:
    return None


async def bench_executor(n: int) -> None:
    steps = tuple(plans.Step(i + 1, f"service:s:{i + 1}", plans.Action.CREATE,
                             after=(plans.Edge(i),) if i % 2 else ()) for i in range(n))
    await executor.execute(plans.Plan(steps), {plans.Action.CREATE: noop})


async def bench_pass(state: model.DesiredState) -> float:
    machine, source = fakes.FakeMachine(P), fakes.FakeSource()
    source.submit(state)
    reconcile = loop.ProjectReconciler(source, machine, machine)
    await reconcile(P)  # the first pass creates everything
    began = time.perf_counter()
    await reconcile(P)  # a pass that finds nothing to do
    return (time.perf_counter() - began) * 1000


async def bench_api(runs: int, n: int) -> tuple[list[float], list[float]]:
    base = Path(tempfile.mkdtemp(prefix="pcb", dir="/tmp"))
    stop = asyncio.Event()
    task = asyncio.ensure_future(daemon.run(base / "root", base / "run", stop=stop))
    stack = {"services": {f"s{i:03d}": {"image": "busybox", "environment": {"I": str(i)}}
                          for i in range(n)}}
    version_ms, put_ms = [], []
    try:
        async with client.AgentClient(base / "run") as agent:
            while not await agent.ping():
                await asyncio.sleep(0.01)
            for _ in range(runs):
                began = time.perf_counter()
                await agent.version()
                version_ms.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await agent.put_project(P, stack)
                put_ms.append((time.perf_counter() - began) * 1000)
    finally:
        stop.set()
        await task
        shutil.rmtree(base, ignore_errors=True)
    return version_ms, put_ms


async def bench_spawn(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        base = Path(tempfile.mkdtemp(prefix="pcs", dir="/tmp"))
        began = time.perf_counter()
        process = await launcher.ensure_agent(base / "root", base / "run")
        out.append((time.perf_counter() - began) * 1000)
        process.terminate()
        process.wait(10)
        shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    logs.configure(level="warning")
    lines = []
    for n in (10, 50, 200):
        state = desired_state(n)
        observed = converged(state)
        lines.append(f"diff, converged, N={n}: "
                     + summary(timed(lambda: diff.diff(state, observed), args.runs)))
        fresh = model.ObservedState()
        lines.append(f"diff, nothing exists, N={n}: "
                     + summary(timed(lambda: diff.diff(state, fresh), args.runs)))
    for n in (50, 200):
        lines.append(f"executor, {n} no-op steps (half chained), concurrency 8: " + summary(
            timed(lambda: asyncio.run(bench_executor(n)), args.runs)))
    for n in (50, 200):
        passes = [asyncio.run(bench_pass(desired_state(n))) for _ in range(args.runs)]
        lines.append(f"reconcile pass with nothing to do (fake machine), N={n}: "
                     + summary(passes))
    version_ms, put_ms = asyncio.run(bench_api(args.runs, 200))
    lines.append("API GET /v1/version over the unix socket: " + summary(version_ms))
    lines.append("API PUT /v1/projects/{name}, 200-service stack (store write): "
                 + summary(put_ms))
    spawn_ms = asyncio.run(bench_spawn(max(3, args.runs // 6)))
    lines.append("background agent start until its socket answers: " + summary(spawn_ms))
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(
        "# Reconciler core overhead\n\n"
        "What the reconciler itself costs, with no containers: the pure diff, the executor,\n"
        "a whole reconcile pass over the fake machine (observe -> diff -> nothing to run),\n"
        "the agent API over its unix socket, and starting a background agent.\n\n"
        f"Command (from the repository root, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}):\n\n"
        f"    .venv/bin/python bench/bench_reconcile_core.py --runs {args.runs}\n\n"
        "Result (other suites may have been running on the same 2 cores):\n\n"
        + "\n".join(f"    {line}" for line in lines) + "\n")


if __name__ == "__main__":
    main()
