"""Benchmark: how fast the agent puts back what was changed by hand, and what it costs idle.

Run as root from the repository:

    .venv/bin/python bench/bench_drift.py [-n 50] [--repeat 5] [--idle 60]

One stack of N containers (a web server publishing port 8080 with memory and pids limits, and
N - 1 sleepers) in a simulated host (a network namespace of its own, as the e2e tests make).
For each kind of drift the change is made by hand, as a user would (`ip link del`, `nft`,
a write to the cgroup file, `ss -K`), and the time from the change until the machine is
repaired (the condition polled every 10 ms) is taken `--repeat` times; a repair that
restarted a container fails the run. Then the agent's CPU time over `--idle` seconds with
nothing to do. A markdown table goes to stdout and to bench/RESULTS-drift.md with the command
line and the date."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from runtime.net import records  # noqa: E402
from tests.e2e import (  # noqa: E402
    conftest,
    test_drift as drift,
)
from tests.support import oci_image  # noqa: E402

RESULTS = BENCH / "RESULTS-drift.md"
GOAL_SECONDS = 2.0
GOAL_IDLE_CPU = 1.0  # % of one core
POLL = 0.01


def stack_text(n: int) -> str:
    return drift.STACK.replace("""  other:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
""", f"""  other:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    scale: {n - 1}
""")


def timed(cause: Callable[[], object], repaired: Callable[[], bool], what: str,
          patience: float = 60.0) -> float:
    """Seconds from the change until `repaired` holds."""
    start = time.monotonic()
    cause()
    while not repaired():
        if time.monotonic() - start > patience:
            raise RuntimeError(f"{what}: not repaired within {patience:g} s")
        time.sleep(POLL)
    return time.monotonic() - start


def kinds(st: conftest.Stack) -> dict[str, tuple[Callable[[], object], Callable[[], bool]]]:
    """drift kind -> (the change by hand, the machine repaired)."""
    host = ["ip", "-n", st.host_netns]
    in_host = ["ip", "netns", "exec", st.host_netns]
    bridge = drift.bridge_of(st)
    network = records.networks(st.root)[f"{st.project}_default"]
    web = f"{st.project}-web-1"
    veths = [ep.host_ifname for att in records.attachments(st.root).values()
             for ep in att.endpoints]
    table = drift.table_of(st)
    memory = drift._limit_file(st, "web", "memory.limit_in_bytes", "memory.max")

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    def links_back() -> bool:
        shown = subprocess.run([*host, "-o", "link", "show", "master", bridge],
                               capture_output=True, text=True, check=False).stdout
        return shown.count("\n") == len(veths) and network.gateway in subprocess.run(
            [*host, "-o", "addr", "show", "dev", bridge], capture_output=True, text=True,
            check=False).stdout

    def served() -> bool:
        return drift.page(st) == "served\n"

    def veth_back() -> bool:
        return (drift.link(st, drift.veth_of(st, web)) or {}).get("master") == bridge

    def listening() -> bool:
        return bool(subprocess.run([*in_host, "ss", "-Htln", "src", network.gateway, "sport",
                                    "=", "53"], capture_output=True, text=True,
                                   check=False).stdout.strip())

    return {
        "bridge deleted": (lambda: run(*host, "link", "del", bridge),
                           lambda: links_back() and served()),
        "veth of a running container deleted": (
            lambda: run(*host, "link", "del", drift.veth_of(st, web)),
            lambda: veth_back() and served()),
        "nft table deleted": (lambda: run(*in_host, "nft", "delete", "table", "ip", table),
                              served),
        "nft chain flushed": (lambda: run(*in_host, "nft", "flush", "chain", "ip", table,
                                          "publish"), served),
        "published port removed": (lambda: run(*in_host, "nft", "delete", "element", "ip", table,
                                               "publish_tcp", "{ 8080 }"), served),
        "cgroup memory limit changed": (lambda: memory.write_text(str(128 << 20)),
                                        lambda: memory.read_text().strip() == str(64 << 20)),
        "DNS sockets destroyed": (lambda: run(*in_host, "ss", "-K", "-a", "src", network.gateway,
                                              "sport", "=", "53"), listening),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="containers in the stack (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="changes per kind (default 5)")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds over which the idle agent's CPU is taken (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = oci_image.write_docker_archive(Path(tmp) / "busybox.tar",
                                                 [oci_image.busybox_layer()], ["busybox:latest"])
        st = conftest.make_stack(archive, "bd" + uuid.uuid4().hex[:6])
        try:
            st.write(stack_text(args.n))
            st.pc("up", "-d", timeout=600)
            drift.wait_for(lambda: drift.page(st) == "served\n", 60, "the page")
            before = drift.starts(st)
            times = {}
            for kind, (cause, repaired) in kinds(st).items():
                times[kind] = [timed(cause, repaired, kind) for _ in range(args.repeat)]
                print(f"{kind}: {' '.join(f'{t:.3f}' for t in times[kind])}", flush=True)
            if drift.starts(st) != before:
                raise RuntimeError("a repair restarted a container")
            pid = st.agent_pid()
            assert pid is not None
            time.sleep(2)  # the last repair's settle pass
            used, start = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle)
            idle = (cpu_seconds(pid) - used) / (time.monotonic() - start) * 100
        finally:
            conftest.remove_stack(st)
    report(args, times, idle)
    return 0


def report(args: argparse.Namespace, times: dict[str, list[float]], idle: float) -> None:
    lines = [f"## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, N = {args.n}",
             "", f"`{shlex.join(['.venv/bin/python', 'bench/bench_drift.py', *sys.argv[1:]])}`"
             f" on {platform.node()} ({os.cpu_count()} cores, kernel {platform.release()})", "",
             f"| drift | median s | min s | max s | goal ≤ {GOAL_SECONDS:g} s |",
             "| --- | ---: | ---: | ---: | --- |"]
    for kind, seconds in times.items():
        median = statistics.median(seconds)
        lines.append(f"| {kind} | {median:.3f} | {min(seconds):.3f} | {max(seconds):.3f} | "
                     f"{'met' if median <= GOAL_SECONDS else 'missed'} |")
    lines += ["", f"Agent CPU idle with {args.n} containers over {args.idle:g} s: "
              f"{idle:.2f} % of one core (goal ≤ {GOAL_IDLE_CPU:g} %: "
              f"{'met' if idle <= GOAL_IDLE_CPU else 'missed'}).", ""]
    text = "\n".join(lines)
    print(text)
    header = "" if RESULTS.exists() else (
        "# Drift repair\n\nTime from a change by hand to the machine repaired (median of "
        "the repetitions), and the idle agent's CPU. No container restarts in any run.\n\n")
    with RESULTS.open("a") as out:
        out.write(header + text + "\n")


if __name__ == "__main__":
    sys.exit(main())
