"""Benchmark: the agent's own time to converge and to remove a stack of N busybox services.

Run as root from the repository:

    .venv/bin/python bench/bench_agent.py [-n 50] [--repeat 3] [--no-record]
    .venv/bin/python bench/bench_agent.py --idle [--no-record]

The CLI's cost is left out: the times come from the agent's JSON log, from `project.submitted`
to the last `container.started` (create), and from `project.removal_requested` to the last
event of that removal (remove). The agent's CPU time per phase is read from /proc. The agent,
its state root, run dir and simulated host are those of bench_compose.py's pcompose side, and
go away at the end. A section goes to stdout and is appended to bench/RESULTS-agent.md.

--idle measures the agent's resident memory with no project (goal: 60 MiB at most) and what
the modules it imports at start cost, each measured in a fresh interpreter."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_compose  # noqa: E402
import compose_stack  # noqa: E402

RESULTS = BENCH / "RESULTS-agent.md"
HEADER = ("# The agent converging and removing N services\n\n"
          "Written by `bench/bench_agent.py`; times from the agent's log, CPU from /proc.\n")


def events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        line = line.strip("\0 ")
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def stamp(event: dict) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def spans(log: Path, project: str) -> tuple[float, float]:
    """(create, remove) seconds of `project`'s last up and down, from the agent's log."""
    mine = [e for e in events(log) if e.get("project") == project or e.get("key") == project]
    submitted = max(stamp(e) for e in mine if e["event"] == "project.submitted")
    removal = max(stamp(e) for e in mine if e["event"] == "project.removal_requested")
    started = [stamp(e) for e in mine if e["event"] == "container.started" and submitted <= stamp(e) < removal]
    removed = [stamp(e) for e in mine if stamp(e) >= removal]
    return max(started) - submitted, max(removed) - removal


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(tool: bench_compose.Pcompose, count: int, workdir: Path) -> dict[str, float]:
    project = f"pca{uuid.uuid4().hex[:6]}n{count}"
    (workdir / project).mkdir()
    stack = compose_stack.write_stack(workdir / project / "compose.yaml", count)
    figures = {}
    for phase, verb in (("create", ["up", "-d"]), ("remove", ["down"])):
        before = cpu_seconds(tool.agent.pid)
        done = bench_compose.quiet(tool.compose(project, stack, verb), cwd=stack.parent)
        figures[f"{phase} cpu"] = cpu_seconds(tool.agent.pid) - before
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(verb)}` failed: {done.stderr.strip()[-500:]}")
    figures["create"], figures["remove"] = spans(tool.root / "bench-agent.log", project)
    tool.cleanup(project, stack)
    return figures


def section(command: str, count: int, runs: list[dict[str, float]], tool, load_before: str) -> list[str]:
    def med(key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    now = dt.datetime.now(dt.timezone.utc)
    return [f"## N = {count}, {now:%Y-%m-%d %H:%M} UTC", "",
            f"Command (as root, from the repository root): `.venv/bin/python {command}`", "",
            f"- versions: {tool.versions()}", f"- machine: {bench_compose.machine(load_before)}",
            f"- runs: {len(runs)}; medians", "",
            f"- create (submitted -> last container started): {med('create')}, "
            f"agent CPU {med('create cpu')}",
            f"- remove (removal requested -> its last event): {med('remove')}, "
            f"agent CPU {med('remove cpu')}"]


# What the agent imports at start, in the order it does: each row is the RSS a fresh
# interpreter gains by importing it after the rows above it.
IMPORTS = ("structlog", "aiohttp.web", "pydantic", "reconciler.spec", "pyroute2",
           "prometheus_client", "reconciler.agent.daemon", "reconciler.agent.machine")
ROOT = BENCH.parent


def import_costs() -> list[tuple[str, float]]:
    script = ("import importlib, json\n"
              "def rss():\n"
              "    for line in open('/proc/self/status'):\n"
              "        if line.startswith('VmRSS:'):\n"
              "            return int(line.split()[1]) / 1024\n"
              f"rows, before = [], rss()\n"
              f"for name in {list(IMPORTS)!r}:\n"
              "    importlib.import_module(name)\n"
              "    rows.append((name, rss() - before)); before = rss()\n"
              "print(json.dumps([('python itself', before - sum(r[1] for r in rows))] + rows))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return [(name, float(mib)) for name, mib in json.loads(done.stdout)]


def idle(command: str, tool, load_before: str) -> list[str]:
    """The agent's RSS with no project, read once it no longer grows (two reads 1 s apart)."""
    rss = tool.agent_rss()
    for _ in range(30):
        time.sleep(1.0)
        now = tool.agent_rss()
        if abs(now - rss) < 0.1:
            break
        rss = now
    costs = import_costs()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [f"## Idle agent, no project, {when}", "",
            f"Command (as root, from the repository root): `.venv/bin/python {command}`", "",
            f"- machine: {bench_compose.machine(load_before)}",
            f"- agent RSS with no project: {now:.1f} MiB (goal: 60 MiB at most)",
            "- what its imports cost, each after those above it, in a fresh interpreter "
            "(MiB): " + ", ".join(f"{name} {mib:.1f}" for name, mib in costs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--services", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--idle", action="store_true",
                        help="the idle agent's memory instead of the stack's times")
    args = parser.parse_args(argv)
    command = "bench/bench_agent.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    tool, load_before = bench_compose.Pcompose(), bench_compose.load()
    runs = []
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pcompose-bench-agent-") as tmp:
        try:
            tool.prepare(Path(tmp))
            if args.idle:
                lines = idle(command, tool, load_before)
            for _ in range(0 if args.idle else args.repeat):
                runs.append(run_once(tool, args.services, Path(tmp)))
                print(", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), file=sys.stderr)
        finally:
            left = tool.finish()
    if not args.idle:
        lines = section(command, args.services, runs, tool, load_before)
    lines += [f"- problem: {p}" for p in left]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        new = not RESULTS.exists()
        with RESULTS.open("a") as out:
            out.write((HEADER if new else "") + "\n" + text)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
