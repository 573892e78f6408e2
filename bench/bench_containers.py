"""Start N containers one by one and N at once, with pcompose's runtime (conmon + runc create/start)
and with bare `runc run -d`; write the times, the ratio and conmon's memory per container.

Run as root from the repository root:  .venv/bin/python bench/bench_containers.py [--count 100]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.cgroups import drivers  # noqa: E402
from runtime.oci import layout, lifecycle, model, runc  # noqa: E402
from tests.support import busybox  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-containers.md"


def config(rootfs: Path, project: str, n: int) -> model.ContainerConfig:
    return model.ContainerConfig(
        name=f"{project}-app-{n}", identity=model.Identity(project, "app", n, "bench"), rootfs=str(rootfs),
        command=("sleep", "100000"), stop_signal="SIGKILL",
    )


async def pcompose_start(lay: layout.Layout, configs: list[model.ContainerConfig], concurrent: bool) -> float:
    began = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(lifecycle.run(lay, c) for c in configs))
    else:
        for c in configs:
            await lifecycle.run(lay, c)
    return time.perf_counter() - began


def bare_bundles(lay: layout.Layout, configs: list[model.ContainerConfig]) -> list[Path]:
    """The same bundles pcompose writes (config.json and /etc files), in a layout of their own."""
    driver = drivers.detect()
    for c in configs:
        lifecycle.write_bundle(lay, c, driver)
    return [lay.bundle(c.name) for c in configs]


async def bare_run(r: runc.Runc, bundle: Path, action: str = "run") -> None:
    # The container inherits runc's stdio: a pipe would stay open as long as it runs.
    detach = ["-d"] if action == "run" else []
    with open(bundle / "runc.err", "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *r.argv(action, *detach, "--bundle", str(bundle), bundle.name),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )
    if await proc.wait():
        raise RuntimeError((bundle / "runc.err").read_text())


async def bare_start(r: runc.Runc, bundles: list[Path], concurrent: bool) -> float:
    began = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(bare_run(r, b) for b in bundles))
    else:
        for b in bundles:
            await bare_run(r, b)
    return time.perf_counter() - began


def conmon_memory(lay: layout.Layout, configs: list[model.ContainerConfig]) -> tuple[float, float]:
    """Mean RSS and PSS (KiB) of the conmon of each container."""
    rss, pss = [], []
    for c in configs:
        pid = int((lay.container_dir(c.name) / "conmon.pid").read_text())
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        values = {ln.split(":")[0]: int(ln.split()[1]) for ln in rollup[1:] if ln.split()[1].isdigit()}
        rss.append(values["Rss"])
        pss.append(values["Pss"])
    return sum(rss) / len(rss), sum(pss) / len(pss)


async def remove_everything(lay: layout.Layout, bare: layout.Layout) -> None:
    for state in await runc.list_all(bare.runc) if Path(bare.runc.root).exists() else []:
        await runc.delete(bare.runc, state["id"], force=True)
    for state in await runc.list_all(lay.runc) if Path(lay.runc.root).exists() else []:
        await lifecycle.remove(lay, state["id"])
    for d in (lay.root / "containers").glob("*"):
        await lifecycle.remove(lay, d.name)
    for parent in (lay.cgroup_parent, bare.cgroup_parent):
        drivers.detect().remove(parent)


async def one_round(base: Path, run_base: Path, rootfs: Path, count: int, concurrent: bool, bare_first: bool) -> dict:
    """Both tools start `count` containers; the one going second finds the first's still running."""
    tag = uuid.uuid4().hex[:6]
    lay = layout.Layout(root=base / tag, run_dir=run_base / tag, cgroup_parent=f"/pcompose-bench-{tag}")
    bare = layout.Layout(root=base / f"{tag}-bare", run_dir=run_base / f"{tag}-bare", cgroup_parent=f"/pcompose-bench-{tag}-bare")
    configs = [config(rootfs, f"b{tag}", n) for n in range(1, count + 1)]
    bare_configs = [dataclasses.replace(c, name=c.name + "-bare") for c in configs]
    try:
        lifecycle.ensure_dirs(bare)
        bundles = bare_bundles(bare, bare_configs)
        if bare_first:
            bare_s = await bare_start(bare.runc, bundles, concurrent)
        pcompose_s = await pcompose_start(lay, configs, concurrent)
        if not bare_first:
            bare_s = await bare_start(bare.runc, bundles, concurrent)
        rss, pss = conmon_memory(lay, configs)
    finally:
        await remove_everything(lay, bare)
        for d in (base / tag, run_base / tag, base / f"{tag}-bare", run_base / f"{tag}-bare"):
            shutil.rmtree(d, ignore_errors=True)
    return {"pcompose": pcompose_s, "runc": bare_s, "rss": rss, "pss": pss, "bare_first": bare_first}


async def breakdown(base: Path, run_base: Path, rootfs: Path, count: int = 20) -> dict[str, float]:
    """Median milliseconds of each step, sequentially: where pcompose's extra time goes."""
    tag = uuid.uuid4().hex[:6]
    lay = layout.Layout(root=base / tag, run_dir=run_base / tag, cgroup_parent=f"/pcompose-bench-{tag}")
    bare = layout.Layout(root=base / f"{tag}-bare", run_dir=run_base / f"{tag}-bare", cgroup_parent=f"/pcompose-bench-{tag}-bare")
    steps: dict[str, list[float]] = {k: [] for k in ("bundle", "conmon+create", "start", "runc create", "runc start", "runc run -d")}
    driver = drivers.detect()

    async def timed(name: str, coro) -> None:
        began = time.perf_counter()
        await coro
        steps[name].append(1000 * (time.perf_counter() - began))

    try:
        lifecycle.ensure_dirs(lay)
        lifecycle.ensure_dirs(bare)
        for n in range(1, count + 1):
            c = config(rootfs, f"b{tag}", n)
            await timed("bundle", asyncio.to_thread(lifecycle.write_bundle, lay, c, driver))
            await timed("conmon+create", lifecycle._launch(lay, c.name, False))
            await timed("start", runc.start(lay.runc, c.name))
            for suffix, action in (("-c", "create"), ("-r", "run")):
                b = dataclasses.replace(c, name=c.name + suffix)
                lifecycle.write_bundle(bare, b, driver)
                if action == "create":
                    await timed("runc create", bare_run(bare.runc, bare.bundle(b.name), "create"))
                    await timed("runc start", runc.start(bare.runc, b.name))
                else:
                    await timed("runc run -d", bare_run(bare.runc, bare.bundle(b.name)))
    finally:
        await remove_everything(lay, bare)
        for d in (base / tag, run_base / tag, base / f"{tag}-bare", run_base / f"{tag}-bare"):
            shutil.rmtree(d, ignore_errors=True)
    return {k: sorted(v)[len(v) // 2] for k, v in steps.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:6]
    base, run_base = Path("/var/lib/pcompose-bench") / run_id, Path("/run/pcompose-bench") / run_id
    rootfs = busybox.make_rootfs(base / "rootfs")
    args.load_before = os.getloadavg()
    results: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    try:
        args.steps = await breakdown(base, run_base, rootfs)
        for n in range(args.rounds):
            for mode in results:
                results[mode].append(await one_round(base, run_base, rootfs, args.count, mode == "concurrent", n % 2 == 1))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(run_base, ignore_errors=True)
    args.load = os.getloadavg()
    report = render(results, args)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)


def render(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    lines = [
        "# Container start: pcompose runtime vs bare runc",
        "",
        f"Command: `.venv/bin/python bench/bench_containers.py --count {args.count} --rounds {args.rounds}` (as root)",
        "",
        f"Machine: {platform.node()}, kernel {platform.release()}, {os.cpu_count()} cores, cgroup v1 hybrid;",
        "runc 1.1.5, conmon 2.1.6. Each container: busybox `sleep`, its own cgroup and namespaces.",
        "pcompose = `lifecycle.run`: write bundle + /etc files, conmon launch and handshake (runc create), runc start.",
        "bare runc = `runc run -d` of the same bundle (config.json and /etc files), stdio to /dev/null, no monitor.",
        "Rounds alternate which tool goes first (the second finds the first's containers running).",
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in args.load_before)}, "
        f"after: {'/'.join(f'{x:.1f}' for x in args.load)} (a shared machine: other work runs alongside).",
        "",
        "| mode | round | first | pcompose (s) | runc run -d (s) | ratio | per container pcompose / runc (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, rounds in results.items():
        for i, r in enumerate(rounds, 1):
            first = "runc" if r["bare_first"] else "pcompose"
            lines.append(f"| {mode} | {i} | {first} | {r['pcompose']:.2f} | {r['runc']:.2f} | {r['pcompose'] / r['runc']:.2f} | "
                         f"{1000 * r['pcompose'] / args.count:.1f} / {1000 * r['runc'] / args.count:.1f} |")
    lines += ["", "Median ratio (pcompose / runc):"]
    for mode, rounds in results.items():
        ratios = sorted(r["pcompose"] / r["runc"] for r in rounds)
        lines.append(f"- {mode}: {ratios[len(ratios) // 2]:.2f}")
    steps = args.steps
    lines += ["", "Where the time goes (median ms of 20 sequential starts, same machine, same moment):", "",
              "| pcompose step | ms | bare runc step | ms |", "|---|---|---|---|",
              f"| write bundle (thread) | {steps['bundle']:.1f} | | |",
              f"| conmon + runc create | {steps['conmon+create']:.1f} | runc create | {steps['runc create']:.1f} |",
              f"| runc start | {steps['start']:.1f} | runc start | {steps['runc start']:.1f} |",
              f"| | | runc run -d | {steps['runc run -d']:.1f} |"]
    rss = [r["rss"] for rounds in results.values() for r in rounds]
    pss = [r["pss"] for rounds in results.values() for r in rounds]
    lines += ["", f"conmon memory per container: RSS {sum(rss) / len(rss) / 1024:.2f} MiB, "
              f"PSS {sum(pss) / len(pss) / 1024:.2f} MiB (from /proc/<pid>/smaps_rollup).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
