"""`pcompose run`: the round trip of a one-off, and piped input and output through conmon's attach socket.

    .venv/bin/python bench/bench_run.py [--runs 10] [--mib 64]

Makes its own state root, run dir and one-service busybox stack, times `run --rm -T box true`
and `run --rm -T box cat` with MIB MiB piped in (a file) and out (a pipe we read), then
`down -v` and stops the agent it started. Writes bench/RESULTS-run.md.
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

from runtime.oci import attach  # noqa: E402
from tests.e2e import conftest  # noqa: E402
from tests.support import oci_image  # noqa: E402

STACK = """\
services:
  box:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
"""


def timed(stack: conftest.Stack, runs: int, *args: str, stdin=subprocess.DEVNULL,
          expect: int = 0) -> list[float]:
    out = []
    for _ in range(runs):
        if hasattr(stdin, "seek"):
            stdin.seek(0)
        began = time.perf_counter()
        done = subprocess.run(stack.argv(*args), cwd=stack.dir, env=stack.env(), stdin=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - began)
        assert len(done.stdout) == expect, (len(done.stdout), expect)
    return out


def row(what: str, values: list[float]) -> str:
    return (f"| {what} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
            f"{min(values) * 1000:.0f} | {max(values) * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=64)
    opts = parser.parse_args()
    work = Path("/var/lib/pcompose-test") / f"bench-run-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    archive = oci_image.write_docker_archive(work / "busybox.tar", [oci_image.busybox_layer()],
                                             ["busybox:latest"])
    data = work / "input"
    data.write_bytes(os.urandom(1024 * 1024) * opts.mib)
    stack = conftest.make_stack(archive, "b" + uuid.uuid4().hex[:7])
    try:
        stack.write(STACK)
        timed(stack, 1, "run", "--rm", "-T", "box", "true")  # starts the agent, makes the network
        true = timed(stack, opts.runs, "run", "--rm", "-T", "box", "true")
        with open(data, "rb") as piped:
            cat = timed(stack, opts.runs, "run", "--rm", "-T", "box", "cat", stdin=piped,
                        expect=opts.mib * 1024 * 1024)
    finally:
        conftest.remove_stack(stack)
        shutil.rmtree(work, ignore_errors=True)
    through = opts.mib / max(statistics.median(cat) - statistics.median(true), 1e-3)
    command = [".venv/bin/python", "bench/bench_run.py", "--runs", str(opts.runs),
               "--mib", str(opts.mib)]
    lines = [
        "# run: one-offs through conmon's attach socket",
        "",
        f"`{' '.join(command)}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), agent in a netns.",
        "Wall time of the whole `pcompose` process, milliseconds.",
        "",
        "| command | runs | median | min | max |",
        "| --- | --- | --- | --- | --- |",
        row("`run --rm -T box true`", true),
        row(f"`run --rm -T box cat` < {opts.mib} MiB file, output read from a pipe", cat),
        "",
        f"The {opts.mib} MiB went in and came back out at about {through:.0f} MiB/s (the "
        f"difference of the medians): input in {attach.CHUNK // 1024} KiB messages to conmon, "
        "output in conmon's 8 KiB pieces, which conmon also writes to the container's log. "
        "The rest of a run is the CLI loading the stack, making the container (network, root, "
        "conmon, runc) and removing it. Figures vary with the machine's load (given above).",
        "",
    ]
    (REPO / "bench" / "RESULTS-run.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
