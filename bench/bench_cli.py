"""CLI latency: a no-op `up -d`, `ps`, `stop`/`start`, `--help`: the whole process, wall time.

    .venv/bin/python bench/bench_cli.py [--runs 20]

Makes its own state root, run dir and two-service busybox stack, runs `up -d` once, times
the verbs, then `down -v` and stops the agent it started. Writes bench/RESULTS-cli.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import conftest  # noqa: E402
from tests.support import oci_image  # noqa: E402

STACK = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
  worker:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
"""


def timed(stack: conftest.Stack, runs: int, *args: str, env: dict | None = None) -> list[float]:
    out = []
    for i in range(runs):
        extra = {"PCOMPOSE_BENCH_RUN": str(i)} if env is None else env
        began = time.perf_counter()
        subprocess.run(stack.argv(*args), cwd=stack.dir, env={**stack.env(), **extra},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - began)
    return out


def row(what: str, values: list[float]) -> str:
    return (f"| {what} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
            f"{min(values) * 1000:.0f} | {max(values) * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    work = Path("/var/lib/pcompose-test") / f"bench-cli-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    archive = oci_image.write_docker_archive(work / "busybox.tar", [oci_image.busybox_layer()],
                                             ["busybox:latest"])
    stack = conftest.make_stack(archive, "b" + uuid.uuid4().hex[:7])
    try:
        stack.write(STACK)
        first = timed(stack, 1, "up", "-d", env={})
        noop = timed(stack, runs, "up", "-d")
        ps = timed(stack, runs, "ps")
        ps_p = timed(stack, runs, "-p", stack.project, "ps")
        stops = timed(stack, runs, "stop", "worker")
        helps = timed(stack, runs, "up", "--help")
    finally:
        conftest.remove_stack(stack)
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# CLI latency",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/bench_cli.py', '--runs', str(runs)])}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores "
        f"(load {os.getloadavg()[0]:.1f}), a two-service busybox stack, agent in a netns.",
        "Wall time of the whole `pcompose` process, milliseconds.",
        "",
        "| command | runs | median | min | max |",
        "| --- | --- | --- | --- | --- |",
        row("first `up -d` (starts the agent, creates 2 containers)", first),
        row("no-op `up -d` (the agent loads the stack and reconciles)", noop),
        row("`ps` (the agent loads the stack for the project name)", ps),
        row("`-p NAME ps`", ps_p),
        row("`stop worker` (the first stops it, the others find nothing to stop)", stops),
        row("`up --help`", helps),
        "",
        "`up`, `down`, `ps`, `ls` and the lifecycle verbs import only the standard library",
        "and the CLI's own modules: the agent loads the stack and acts. Their time is the",
        "interpreter's start plus the agent's work; `--help` is the interpreter and argparse.",
        "",
    ]
    (REPO / "bench" / "RESULTS-cli.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
