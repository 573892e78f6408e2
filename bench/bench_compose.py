"""Benchmark: pcompose against podman-compose on N busybox services: up -d, no-op up -d, one change, down.

Run as root from the repository:

    bash bench/podman_setup.sh                                      # once, for --tool podman
    .venv/bin/python bench/bench_compose.py --tool podman -n 10 50 200
    .venv/bin/python bench/bench_compose.py --tool pcompose -n 10 50 200
    .venv/bin/python bench/bench_compose.py --tool pcompose --large      # N = 1,000, ps while up runs
    .venv/bin/python bench/bench_compose.py --tool pcompose -n 50 --profile /tmp/agent  # py-spy

Each phase is one CLI call timed with time.monotonic. After it, the tool's own view of the
containers (podman ps; runc's state under pcompose's private root) must show the expected state;
if the call returned before all containers run, the wait until they do counts too. Every project
has a fresh name and is removed at the end, also on failure. A markdown table goes to stdout and
is appended to bench/RESULTS.md with the command line and the date.

For pcompose, a bare-runc row is measured in the same run: the bundles of the first `up -d`
(config.json and /etc files as pcompose wrote them) are copied, and after each `down` run again
without pcompose, each over a fresh overlay of the same layers and in a network namespace of
its own, by `runc run -d` (as many at once as the agent's executor runs steps), then removed by
`runc delete --force`. The agent's RSS and CPU are read from /proc."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fcntl
import json
import logging
import os
import platform
import re
import select
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import compose_stack  # noqa: E402

from controllers import context  # noqa: E402
from reconciler.agent import client  # noqa: E402
from reconciler.engine import loop  # noqa: E402
from runtime import rootfs  # noqa: E402
from runtime.images import store as image_store  # noqa: E402
from runtime.net import netns  # noqa: E402
from runtime.oci import observe  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
PHASES = ("up", "noop", "change", "down")
TITLES = {"up": "up -d", "noop": "no-op up -d", "change": "change one", "down": "down"}
# Issue 6's goals at N = 50: a share of podman-compose's time, or an absolute bound.
GOAL_N = 50
GOAL_SHARE = {"up": 1 / 5, "down": 1 / 4}
GOAL_SECONDS = {"noop": 0.3, "change": 1.0}


@dataclass
class Outcome:
    """One N: the seconds of each phase per repetition, and what did not go as expected."""
    count: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    problems: list[str] = field(default_factory=list)
    # `runc run -d` and `runc delete --force` of the same bundles, by phase ("up", "down").
    bare: dict[str, list[float]] = field(default_factory=lambda: {"up": [], "down": []})
    # pcompose's agent: RSS (MiB) after up and after down, its CPU per container during up (ms),
    # and how long each `ps` took while the first `up -d` ran (s).
    agent: dict[str, list[float]] = field(
        default_factory=lambda: {"rss_up": [], "rss_down": [], "cpu_up": [], "ps": []})

    def median(self, phase: str) -> float | None:
        values = self.seconds[phase]
        return statistics.median(values) if values else None

    def bare_median(self, phase: str) -> float | None:
        values = self.bare[phase]
        return statistics.median(values) if values else None


class PhaseFailed(Exception):
    """A phase's command failed, or left the containers other than expected."""


# ---- the two tools: how to call them, how to see their containers, how to clean up after them

PODMAN_LABEL = "podman-compose"
PCOMPOSE_LABEL = "pcompose"
CGROUP_ROOT = Path("/sys/fs/cgroup")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def quiet(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def first_line(argv: list[str]) -> str:
    try:
        done = quiet(argv)
    except OSError as error:
        return f"{argv[0]}: {error.strerror}"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def remove_cgroup_tree(relative: str) -> list[str]:
    """rmdir `relative` under every hierarchy, children first; what could not go is returned."""
    left = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / relative
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as error:
                left.append(f"{dirpath}: {error.strerror}")
    return left


class Tool:
    """What the benchmark needs of a compose tool."""
    label = ""
    failed = False  # a phase failed: finish() keeps what helps to see why
    tty = False     # calls run on a pseudo-terminal (the in-place progress block)
    ps_probe = False  # `ps` is called over and over while the first `up -d` runs

    def unavailable(self) -> str | None:
        """Why this tool cannot run here, or None."""
        raise NotImplementedError

    def prepare(self, workdir: Path) -> None:
        """Load the image; anything else before the first timed call."""

    def compose(self, project: str, stack: Path, verb: list[str]) -> list[str]:
        raise NotImplementedError

    def running(self, project: str) -> dict[str, str]:
        """An identity that changes on recreate, by service, of the project's running containers."""
        raise NotImplementedError

    def containers(self, project: str) -> list[str]:
        """Ids of all the project's containers, whatever their state."""
        raise NotImplementedError

    def cleanup(self, project: str, stack: Path) -> None:
        """Remove whatever the project left; safe to call after a clean `down`."""

    def finish(self) -> list[str]:
        """Undo prepare(); leftovers that could not be removed are returned as problems."""
        return []

    def versions(self) -> str:
        raise NotImplementedError


class Podman(Tool):
    """podman-compose 1.6.0 from bench/.podman-venv driving Debian's podman (runc, cgroupfs)."""
    label = PODMAN_LABEL
    compose_bin = BENCH / ".podman-venv" / "bin" / "podman-compose"
    conf = Path("/etc/containers/containers.conf")

    def __init__(self) -> None:
        self.projects: list[str] = []
        self.had_image = True
        self.ip_forward = ""
        self.had_cgroup_parent = True

    def unavailable(self) -> str | None:
        conf = self.conf.read_text() if self.conf.exists() else ""
        if not shutil.which("podman") or not self.compose_bin.exists() \
                or 'runtime = "runc"' not in conf or 'cgroup_manager = "cgroupfs"' not in conf:
            return "podman, podman-compose or its configuration is missing: run `bash bench/podman_setup.sh`"
        return None

    def prepare(self, workdir: Path) -> None:
        # netavark turns on forwarding for its bridge and podman makes /libpod_parent: both go back.
        self.ip_forward = IP_FORWARD.read_text()
        self.had_cgroup_parent = any((h / "libpod_parent").exists() for h in CGROUP_ROOT.iterdir())
        self.had_image = quiet(["podman", "image", "exists", compose_stack.IMAGE]).returncode == 0
        archive = compose_stack.write_image_archive(workdir / "busybox.tar")
        subprocess.run(["podman", "load", "-q", "-i", str(archive)], check=True, capture_output=True)

    def compose(self, project: str, stack: Path, verb: list[str]) -> list[str]:
        if project not in self.projects:
            self.projects.append(project)
        return [str(self.compose_bin), "-p", project, "-f", str(stack), *verb]

    def _ps(self, project: str, *extra: str) -> list[dict]:
        done = subprocess.run(["podman", "ps", *extra, "--format", "json", "--filter",
                               f"label=io.podman.compose.project={project}"],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout or "[]")

    def running(self, project: str) -> dict[str, str]:
        return {c["Labels"]["io.podman.compose.service"]: c["Id"]
                for c in self._ps(project) if c.get("State") == "running"}

    def containers(self, project: str) -> list[str]:
        return [c["Id"] for c in self._ps(project, "-a")]

    def cleanup(self, project: str, stack: Path) -> None:
        if self.containers(project):
            quiet(self.compose(project, stack, ["down"]), cwd=stack.parent)
        ids = self.containers(project)
        if ids:
            quiet(["podman", "rm", "-f", *ids])
        if quiet(["podman", "pod", "exists", f"pod_{project}"]).returncode == 0:
            quiet(["podman", "pod", "rm", "-f", f"pod_{project}"])
        if quiet(["podman", "network", "exists", f"{project}_default"]).returncode == 0:
            quiet(["podman", "network", "rm", "-f", f"{project}_default"])

    def finish(self) -> list[str]:
        left = [f"{p}: {len(self.containers(p))} containers left"
                for p in self.projects if self.containers(p)]
        if not self.had_image:
            quiet(["podman", "rmi", compose_stack.IMAGE])
        if not self.had_cgroup_parent:
            left += remove_cgroup_tree("libpod_parent")
        if self.ip_forward and IP_FORWARD.read_text() != self.ip_forward:
            IP_FORWARD.write_text(self.ip_forward)
        return left

    def versions(self) -> str:
        return ", ".join((first_line(["podman", "--version"]),
                          first_line([str(self.compose_bin), "--version"]).split(" using ")[0],
                          first_line(["runc", "--version"])))


class Pcompose(Tool):
    """This repository's pcompose with its own agent, state root, run dir and host netns.

    The agent's bridge, rules and DNS live in a network namespace made here (a simulated host,
    as in the e2e tests): the same kernel work as on the host, and nothing of it can outlive
    the benchmark or reach beyond the machine."""
    label = PCOMPOSE_LABEL
    binary = REPO / ".venv" / "bin" / "pcompose"

    def __init__(self) -> None:
        tag = f"cmp{uuid.uuid4().hex[:7]}"
        self.root = Path("/var/lib/pcompose-bench") / tag
        self.run_dir = Path("/run/pcompose-bench") / tag
        self.netns = Path("/run/netns") / f"pcbench-{tag}"
        self.ctx = context.make(self.root, self.run_dir, netns=str(self.netns))
        self.projects: list[str] = []
        self.agent: subprocess.Popen | None = None
        self.agent_start = 0.0
        self.bare = False  # a bare-runc row beside pcompose's (bare_cycle)
        self.profile: Path | None = None  # py-spy's raw stacks of the first `up -d`, FILE.<N>

    def unavailable(self) -> str | None:
        for verb in ("up", "down"):
            done = quiet([str(self.binary), verb, "--help"])
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or [""])[-1]
                return f"`pcompose {verb} --help` exited {done.returncode}: {last}"
        return None

    def _global(self) -> list[str]:
        return [str(self.binary), "--root", str(self.root), "--run-dir", str(self.run_dir),
                "--host-netns", str(self.netns)]

    def prepare(self, workdir: Path) -> None:
        self.root.mkdir(parents=True)
        self.run_dir.mkdir(parents=True)
        subprocess.run(["ip", "netns", "add", self.netns.name], check=True)
        archive = compose_stack.write_image_archive(workdir / "busybox.tar")
        subprocess.run([*self._global(), "image", "load", "-q", "-i", str(archive)],
                       check=True, capture_output=True)
        # The agent is started here, not by the first `up`: every phase then measures a running
        # agent, as a user's second and later stacks would see it.
        start = time.monotonic()
        with open(self.root / "bench-agent.log", "ab") as log:
            self.agent = subprocess.Popen([*self._global(), "agent"], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not asyncio.run(self._answers()):
            if self.agent.poll() is not None or time.monotonic() - start > 30:
                raise SystemExit(f"the pcompose agent did not answer; see {self.root}/bench-agent.log")
            time.sleep(0.05)
        self.agent_start = time.monotonic() - start

    async def _answers(self) -> bool:
        async with client.AgentClient(self.run_dir, timeout=2.0) as agent:
            return await agent.ping()

    def compose(self, project: str, stack: Path, verb: list[str]) -> list[str]:
        if project not in self.projects:
            self.projects.append(project)
        return [*self._global(), "-p", project, "-f", str(stack), *verb]

    def _observed(self, project: str) -> list[observe.Observed]:
        return asyncio.run(observe.list_containers(self.ctx.layout, project))

    def running(self, project: str) -> dict[str, str]:
        # A recreated container keeps its name as runc id: its new process tells it apart.
        return {o.service: f"{o.id}/{o.pid}" for o in self._observed(project) if o.status == "running"}

    def containers(self, project: str) -> list[str]:
        return [o.id for o in self._observed(project)]

    def cleanup(self, project: str, stack: Path) -> None:
        if self.containers(project):
            quiet(self.compose(project, stack, ["down"]), cwd=stack.parent)
        for cid in self.containers(project):
            quiet(["runc", "--root", str(self.run_dir / "runc"), "delete", "--force", cid])

    # ---- the agent's own figures

    def agent_rss(self) -> float:
        """The agent's resident memory in MiB."""
        assert self.agent is not None
        for line in Path(f"/proc/{self.agent.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def agent_cpu(self) -> float:
        """Seconds of CPU the agent used so far (user + system, its own threads)."""
        assert self.agent is not None
        fields = Path(f"/proc/{self.agent.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # ---- bare runc: the bundles pcompose ran, each started by `runc run -d` alone

    def snapshot(self, project: str, dest: Path) -> list[Template]:
        """Copies of the project's running bundles (config.json, /etc files), with what ties
        them to their container: made right after an `up`, replayed by bare_cycle later."""
        templates = []
        for cdir in sorted((self.root / "containers").iterdir()):
            name_file = cdir / "name"
            if not name_file.exists() or not name_file.read_text().startswith(f"{project}-"):
                continue
            text = (cdir / "config.json").read_text()
            doc = json.loads(text)
            ns = next(n.get("path", "") for n in doc["linux"]["namespaces"] if n["type"] == "network")
            chain_ids = tuple(json.loads(
                (rootfs.rootfs_dir(self.root, cdir.name) / image_store.LOWERS_FILE).read_text()))
            copy = dest / cdir.name
            shutil.copytree(cdir, copy, ignore=_only_files_and_dirs)
            templates.append(Template(copy, text, chain_ids, str(cdir), doc["root"]["path"], ns,
                                      doc["linux"]["cgroupsPath"]))
        return templates

    def bare_cycle(self, templates: list[Template], workdir: Path) -> dict[str, float]:
        """The templates' bundles made again (an overlay of the same layers and a network
        namespace each, under a runc root of their own), then timed: `runc run -d` of all of
        them, `concurrency` at once as the agent's executor runs steps, and `runc delete
        --force` of all of them, as concurrently. Everything made is removed again."""
        tag = uuid.uuid4().hex[:6]
        runc_root = self.run_dir / f"runc-bare-{tag}"
        made: list[tuple[str, Path, Path]] = []
        try:
            for i, t in enumerate(templates):
                bid = f"bare{tag}-{i}"
                bdir = workdir / "bare" / bid
                shutil.copytree(t.copy, bdir)
                made.append((bid, bdir, netns.path(self.run_dir, bid)))
                merged = rootfs.prepare(self.root, bid, t.chain_ids).merged_dir
                netns.ensure(made[-1][2])
                cgroup = f"{self.ctx.cgroup_parent}/bare-{tag}/{bid}"
                text = (t.config.replace(t.merged, merged).replace(t.cdir, str(bdir))
                        .replace(json.dumps(t.cgroup), json.dumps(cgroup)))
                if t.netns:
                    text = text.replace(json.dumps(t.netns), json.dumps(str(made[-1][2])))
                (bdir / "config.json").write_text(text)
            return asyncio.run(_bare_timed(runc_root, made))
        finally:
            for bid, bdir, ns in made:
                quiet(["runc", "--root", str(runc_root), "delete", "--force", bid])
                rootfs.remove(self.root, bid)
                netns.remove(ns)
                shutil.rmtree(bdir, ignore_errors=True)
            shutil.rmtree(runc_root, ignore_errors=True)
            remove_cgroup_tree(f"{self.ctx.cgroup_parent.strip('/')}/bare-{tag}")

    def finish(self) -> list[str]:
        left = [f"{p}: {len(self.containers(p))} containers left"
                for p in self.projects if self.containers(p)]
        if self.agent and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        left += self._unmount_leftovers()
        left += remove_cgroup_tree(self.ctx.cgroup_parent.strip("/"))
        log = self.root / "bench-agent.log"
        if (left or self.failed) and log.exists():
            kept = Path(tempfile.gettempdir()) / f"pcompose-bench-agent-{self.root.name}.log"
            shutil.copyfile(log, kept)
            left.append(f"the agent's log is kept in {kept}")
        if self.netns.exists():
            quiet(["ip", "netns", "del", self.netns.name])
        if not any(line.startswith("mount still") for line in left):
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return left

    def _unmount_leftovers(self) -> list[str]:
        """Mounts (overlays, netns files) still under the private root or run dir, deepest first."""
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        mine = [p for p in points if p.startswith((f"{self.root}/", f"{self.run_dir}/"))]
        left = []
        for point in sorted(set(mine), key=len, reverse=True):
            if quiet(["umount", "-l", point]).returncode == 0:
                left.append(f"mount left after down, unmounted: {point}")
            else:
                left.append(f"mount still there: {point}")
        return left

    def versions(self) -> str:
        commit = quiet(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
        return (f"pcompose {commit}, {first_line(['runc', '--version'])}, "
                f"agent started before the first phase in {self.agent_start:.2f} s, "
                f"its bridge and rules in a network namespace of its own (a simulated host)")


@dataclass(frozen=True)
class Template:
    """One running pcompose container's bundle, copied, and the paths that tie it to it."""
    copy: Path
    config: str  # config.json as pcompose wrote it
    chain_ids: tuple[str, ...]  # its root's layers, bottom first
    cdir: str
    merged: str
    netns: str
    cgroup: str


def _only_files_and_dirs(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if not (os.path.isfile(os.path.join(directory, n))
                                     or os.path.isdir(os.path.join(directory, n)))]


async def _bare_timed(runc_root: Path, bundles: list[tuple[str, Path, Path]]) -> dict[str, float]:
    limit = asyncio.Semaphore(loop.ProjectReconciler.concurrency)

    async def runc_call(bid: str, bdir: Path, *args: str) -> None:
        async with limit:
            # The container inherits runc's stdio: a pipe would stay open as long as it runs.
            with open(bdir / "runc.err", "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    "runc", "--root", str(runc_root), *args, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, cwd=bdir)
                if await proc.wait():
                    raise PhaseFailed(f"bare runc {args[0]} {bid}: {(bdir / 'runc.err').read_text().strip()}")

    start = time.monotonic()
    await asyncio.gather(*(runc_call(bid, bdir, "run", "-d", "--bundle", str(bdir), bid)
                           for bid, bdir, _ in bundles))
    up = time.monotonic() - start
    start = time.monotonic()
    await asyncio.gather(*(runc_call(bid, bdir, "delete", "--force", bid) for bid, bdir, _ in bundles))
    return {"up": up, "down": time.monotonic() - start}


def make(name: str) -> Tool:
    return Podman() if name == "podman" else Pcompose()


RESULTS_HEADER = """# Compose benchmark: pcompose against podman-compose

Issue 6: the same machine, the same busybox image (a docker-archive tar of a busybox-static
root, bench/compose_stack.py), stacks of N = 10, 50 and 200 services that each run `sleep`
with `stop_signal: SIGKILL` on one default network (internal: no NAT to the outside), no ports,
`pull_policy: never`. Phases, each one CLI call timed with time.monotonic: `up -d` until all
run, a second `up -d` with nothing changed, `up -d` after changing one service's environment,
`down`. After each call the tool's own view is checked (podman ps; runc state under pcompose's
root): all running, nothing recreated by the no-op, only the changed service recreated, nothing
left after down. podman runs runc with cgroupfs (bench/podman_setup.sh).

Goals at N = 50: `up -d` at most a fifth of podman-compose's time, a no-op `up -d` under
0.3 s, a one-service change under 1 s, `down` at most a quarter of podman-compose's time.

Sections below are appended by bench/bench_compose.py, newest last.
"""


def recorded_medians(path: Path, label: str, count: int) -> dict[str, float]:
    """The last table row of `label` for N = `count` in a results file, as seconds by phase."""
    found: dict[str, float] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(PHASES) and cells[0] == label and cells[1] == str(count):
            found = {p: float(v) for p, v in zip(PHASES, cells[2:], strict=True) if v != "-"}
    return found


def timed(tool: Tool, project: str, stack: Path, verb: list[str], limit: float) -> tuple[float, float]:
    """(seconds the call took, the monotonic time it ended); a failed call raises PhaseFailed."""
    argv = tool.compose(project, stack, verb)
    start = time.monotonic()
    try:
        if tool.tty:
            done = on_pty(argv, stack.parent, limit)
        else:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=stack.parent,
                                  timeout=limit)
    except subprocess.TimeoutExpired:
        raise PhaseFailed(f"`{' '.join(verb)}` had not returned after {limit:.0f}s") from None
    end = time.monotonic()
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PhaseFailed(f"`{' '.join(verb)}` exited {done.returncode}: {tail}")
    return end - start, end


def on_pty(argv: list[str], cwd: Path, limit: float) -> subprocess.CompletedProcess:
    """argv with its stdout and stderr on a pseudo-terminal of 120x50 that is read as fast as
    a terminal would; what it wrote is its stdout."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd,
                            start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + limit
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise subprocess.TimeoutExpired(argv, limit)
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the writers are gone
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait()
    finally:
        os.close(master)
    return subprocess.CompletedProcess(argv, code, b"".join(chunks).decode("utf-8", "replace"), "")


def wait_running(tool: Tool, project: str, count: int, ended: float, timeout: float,
                 replaced: tuple[str, dict[str, str]] | None = None) -> tuple[dict[str, str], float]:
    """Poll the tool's view until `count` services run (and `replaced` runs a new container).

    Returns the running container ids by service and the seconds from the end of the call to
    the look that saw them all: 0 when the first look after the call already did."""
    deadline = time.monotonic() + timeout
    looks = 0
    while True:
        running = tool.running(project)
        looks += 1
        ready = len(running) >= count
        if ready and replaced:
            service, before = replaced
            ready = running.get(service) not in (None, before.get(service))
        if ready:
            return running, (0.0 if looks == 1 else time.monotonic() - ended)
        if time.monotonic() > deadline:
            raise PhaseFailed(f"{len(running)} of {count} services running {timeout:.0f}s after the call")
        time.sleep(0.05)


SAMPLE_RATE = 250  # py-spy samples a second


class Sampler:
    """py-spy recording the agent's active threads (raw stacks) while active, if `out` is set."""

    def __init__(self, tool: Pcompose | None, out: Path | None) -> None:
        self.argv = None
        if tool and tool.agent and out:
            self.argv = [str(REPO / ".venv" / "bin" / "py-spy"), "record", "--pid", str(tool.agent.pid),
                         "--rate", str(SAMPLE_RATE), "--format", "raw", "--output", str(out),
                         "--threads", "--gil", "--nonblocking"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Sampler:
        if self.argv:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PsProbe:
    """While active, `ps` of the project one call after another, as a user watching an `up`
    would: each call's seconds are kept (the agent answering them is what is measured)."""

    def __init__(self, tool: Tool, project: str, stack: Path, active: bool) -> None:
        self.argv = tool.compose(project, stack, ["ps", "-a"])
        self.cwd = stack.parent
        self.active = active
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ps-probe", daemon=True)

    def __enter__(self) -> PsProbe:
        if self.active:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.active:
            self.thread.join()

    def _run(self) -> None:
        while not self.done.is_set():
            start = time.monotonic()
            done = quiet(self.argv, cwd=self.cwd)
            if done.returncode == 0:
                self.seconds.append(time.monotonic() - start)
            else:
                self.failures.append(done.stderr.strip()[-200:])


def wait_gone(tool: Tool, project: str, ended: float, timeout: float) -> float:
    """Poll until the project has no container left; the seconds waited, as in wait_running."""
    deadline = time.monotonic() + timeout
    looks = 0
    while True:
        left = tool.containers(project)
        looks += 1
        if not left:
            return 0.0 if looks == 1 else time.monotonic() - ended
        if time.monotonic() > deadline:
            raise PhaseFailed(f"{len(left)} containers left {timeout:.0f}s after `down`")
        time.sleep(0.05)


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(s for s in set(before) | set(after) if before.get(s) != after.get(s))


def run_once(tool: Tool, count: int, workdir: Path, outcome: Outcome,
             templates: list[Template]) -> bool:
    """The four phases on a fresh project, False if one failed; its leftovers are removed.
    For pcompose with `bare`, the bundles of the first `up` are copied into `templates` (when
    empty) and after `down` bare runc runs them: both in the same run, one after the other."""
    project = f"pcb{uuid.uuid4().hex[:6]}n{count}"
    stack = compose_stack.write_stack(workdir / f"{project}.yaml", count)
    # How long a call may take, and how long after it the containers may take to get there.
    limit, timeout = 60 + 3.0 * count, 30 + 1.0 * count
    pcompose = tool if isinstance(tool, Pcompose) else None
    try:
        cpu = pcompose.agent_cpu() if pcompose else 0.0
        sampled = pcompose.profile if pcompose and not outcome.seconds["up"] else None
        with PsProbe(tool, project, stack, tool.ps_probe) as probe, \
                Sampler(pcompose, sampled.with_suffix(f".{count}") if sampled else None):
            seconds, ended = timed(tool, project, stack, ["up", "-d"], limit)
            first, waited = wait_running(tool, project, count, ended, timeout)
        outcome.seconds["up"].append(seconds + waited)
        outcome.agent["ps"] += probe.seconds
        outcome.problems += [f"ps during up failed: {f}" for f in probe.failures[:3]]
        if pcompose:
            outcome.agent["cpu_up"].append(1000 * (pcompose.agent_cpu() - cpu) / count)
            outcome.agent["rss_up"].append(pcompose.agent_rss())
            if pcompose.bare and not templates:
                templates += pcompose.snapshot(project, workdir / f"templates-{project}")

        seconds, ended = timed(tool, project, stack, ["up", "-d"], limit)
        again, waited = wait_running(tool, project, count, ended, timeout)
        if again != first:
            outcome.problems.append(f"no-op up -d recreated {', '.join(changed(first, again))}")
        outcome.seconds["noop"].append(seconds + waited)

        target = compose_stack.service_name(0)
        compose_stack.write_stack(stack, count, {target: 2})
        seconds, ended = timed(tool, project, stack, ["up", "-d"], limit)
        after, waited = wait_running(tool, project, count, ended, timeout, replaced=(target, first))
        if changed(first, after) != [target]:
            outcome.problems.append(f"changing {target} recreated {', '.join(changed(first, after))}")
        outcome.seconds["change"].append(seconds + waited)

        with Sampler(pcompose, sampled.with_suffix(f".{count}.down") if sampled else None):
            seconds, ended = timed(tool, project, stack, ["down"], limit)
            gone = wait_gone(tool, project, ended, timeout)
        outcome.seconds["down"].append(seconds + gone)
        if pcompose:
            outcome.agent["rss_down"].append(pcompose.agent_rss())
            if templates:
                for phase, value in pcompose.bare_cycle(templates, workdir).items():
                    outcome.bare[phase].append(value)
    except PhaseFailed as failure:
        outcome.problems.append(f"N={count}: {failure}")
        tool.failed = True
        return False
    finally:
        tool.cleanup(project, stack)
    return True


BARE_LABEL = "bare runc"
# Issue 16's goals: pcompose's `up -d` within 1.3x of bare runc's in the same run at any N;
# absolute bounds at N = 50 and 1,000.
BARE_FACTOR = 1.3
GOALS_16 = {50: {"noop": 0.15, "change": 0.3, "down": 0.6},
            1000: {"up": 35.0, "noop": 0.8, "change": 1.0, "down": 12.0}}
GOAL_RSS_1000 = 120.0
GOAL_PS = 0.5


def agent_lines(outcomes: list[Outcome]) -> list[str]:
    """The agent's memory and CPU, `ps` while `up` ran, and the bare-runc spreads."""
    lines = []
    for o in outcomes:
        a = o.agent
        if a["rss_up"]:
            lines.append(f"- N={o.count} agent: RSS {statistics.median(a['rss_up']):.0f} MiB after up -d, "
                         f"{statistics.median(a['rss_down']):.0f} MiB after down (medians); its CPU during "
                         f"up -d {statistics.median(a['cpu_up']):.1f} ms per container")
        if a["ps"]:
            ps = sorted(a["ps"])
            lines.append(f"- N={o.count} `ps -a` while up -d ran: {len(ps)} calls, median "
                         f"{statistics.median(ps):.2f} s, max {ps[-1]:.2f} s (goal <= {GOAL_PS} s)")
        if len(o.bare["up"]) > 1:
            lines.append(f"- N={o.count} bare runc min-max s: up -d {min(o.bare['up']):.2f}-"
                         f"{max(o.bare['up']):.2f}, down {min(o.bare['down']):.2f}-{max(o.bare['down']):.2f}")
    return lines


def bare_goals(outcomes: list[Outcome]) -> list[str]:
    """Issue 16's goals: against bare runc measured in this run, and its absolute bounds."""
    lines = []
    for o in outcomes:
        up, bare = o.median("up"), o.bare_median("up")
        if up is not None and bare:
            verdict = "met" if up <= BARE_FACTOR * bare else "missed"
            lines.append(f"- N={o.count} up -d: {up:.2f} s = {up / bare:.2f}x bare runc's {bare:.2f} s "
                         f"(goal <= {BARE_FACTOR}x): {verdict}")
        down, bare_down = o.median("down"), o.bare_median("down")
        if down is not None and bare_down:
            lines.append(f"- N={o.count} down: {down:.2f} s = {down / bare_down:.2f}x bare `runc delete "
                         f"--force`'s {bare_down:.2f} s")
        for phase, bound in GOALS_16.get(o.count, {}).items():
            value = o.median(phase)
            if value is not None:
                lines.append(f"- N={o.count} {TITLES[phase]}: {value:.2f} s (goal <= {bound:g} s): "
                             f"{'met' if value <= bound else 'missed'}")
        if o.count == 1000 and o.agent["rss_up"]:
            rss = max(statistics.median(o.agent["rss_up"]), statistics.median(o.agent["rss_down"]))
            lines.append(f"- N=1000 agent RSS: {rss:.0f} MiB (goal <= {GOAL_RSS_1000:g} MiB): "
                         f"{'met' if rss <= GOAL_RSS_1000 else 'missed'}")
        if o.agent["ps"]:
            worst = max(o.agent["ps"])
            lines.append(f"- N={o.count} ps while up -d runs: max {worst:.2f} s (goal <= {GOAL_PS} s): "
                         f"{'met' if worst <= GOAL_PS else 'missed'}")
    return ["Goals of issue 16 (bare runc measured in this run):"] + lines if lines else []


# Where a sampled stack's time is put: the first of these found from its innermost frame out
# (py-spy names files relative to their sys.path entry: "runtime/net/bridge.py", "asyncio/...").
AREAS = (("/pyroute2/", "netlink (pyroute2)"), ("/structlog/", "logging (structlog)"),
         ("/json/", "json"), ("subprocess.py", "process spawns (subprocess)"),
         ("/runtime/net/", "runtime/net"), ("/runtime/oci/", "runtime/oci"),
         ("/runtime/", "runtime (other)"), ("/controllers/", "controllers"),
         ("/reconciler/", "reconciler"), ("/aiohttp/", "aiohttp"), ("/asyncio/", "asyncio"),
         ("/concurrent/", "thread pools"), ("/threading.py", "thread pools"))
OURS = ("reconciler/", "controllers/", "runtime/")


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file:line) of each frame of a raw py-spy stack, outermost first."""
    out = []
    for frame in stack.split(";"):
        if frame.endswith(")") and " (" in frame:
            func, where = frame[:-1].rsplit(" (", 1)
            out.append((func, where))
    return out


def profile_lines(prefix: Path, outcomes: list[Outcome]) -> list[str]:
    """Per N, the agent's sampled time during the first `up -d` and `down` in ms per container:
    by area (where the innermost frame is) and by the innermost pcompose function (what asked
    for it)."""
    lines = []
    for o, phase in [(o, phase) for o in outcomes for phase in ("up", "down")]:
        raw = prefix.with_suffix(f".{o.count}" + (".down" if phase == "down" else ""))
        if not raw.exists():
            continue
        areas: dict[str, int] = {}
        ours: dict[str, int] = {}
        threads: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            head = stack.split(";", 1)[0]
            thread = re.sub(r"_\d+$", "", head.split(": ", 1)[1]) if ": " in head else "(no name)"
            threads[thread] = threads.get(thread, 0) + n
            frames = _frames(stack)
            area = next((label for _, where in reversed(frames) for pattern, label in AREAS
                         if pattern in "/" + where), "other (no Python frame, or its own)")
            areas[area] = areas.get(area, 0) + n
            own = next((f"{func} ({where})" for func, where in reversed(frames)
                        if where.startswith(OURS)), "(no pcompose frame)")
            ours[own] = ours.get(own, 0) + n
        per = 1000 / SAMPLE_RATE / o.count  # ms per container of one sample
        lines += [f"Agent profile, N = {o.count}, first {TITLES[phase]}: {total} samples of the thread "
                  f"holding the GIL at {SAMPLE_RATE}/s (py-spy, raw stacks in {raw}) = "
                  f"{total * per:.1f} ms per container", "",
                  "| where (innermost frame) | ms per container |", "| --- | --- |"]
        lines += [f"| {a} | {n * per:.2f} |" for a, n in sorted(areas.items(), key=lambda x: -x[1])]
        lines += ["", "| innermost pcompose function (incl. what it calls) | ms per container |",
                  "| --- | --- |"]
        lines += [f"| `{f}` | {n * per:.2f} |" for f, n in sorted(ours.items(), key=lambda x: -x[1])[:25]]
        lines += ["", "| thread | ms per container |", "| --- | --- |"]
        lines += [f"| {t} | {n * per:.2f} |" for t, n in sorted(threads.items(), key=lambda x: -x[1])[:8]]
        lines.append("")
    return lines


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(tool: Tool, outcomes: list[Outcome], repeat: int) -> str:
    label = "median s" if repeat > 1 else "s"
    lines = [f"| tool | N | {' | '.join(f'{TITLES[p]} ({label})' for p in PHASES)} |",
             "|" + " --- |" * (2 + len(PHASES))]
    for o in outcomes:
        cells = " | ".join(fmt(o.median(p)) for p in PHASES)
        lines.append(f"| {tool.label} | {o.count} | {cells} |")
    return "\n".join(lines)


def spread(outcomes: list[Outcome]) -> list[str]:
    """Each repeated phase's min-max, so a reader sees how much the medians can be trusted."""
    lines = []
    for o in outcomes:
        ranges = [f"{TITLES[p]} {min(o.seconds[p]):.2f}-{max(o.seconds[p]):.2f}"
                  for p in PHASES if len(o.seconds[p]) > 1]
        if ranges:
            lines.append(f"- N={o.count} min-max s: " + ", ".join(ranges))
    return lines


def goals(outcomes: list[Outcome]) -> list[str]:
    """pcompose at N = 50 against issue 6's goals and podman-compose's last recorded figures."""
    mine = next((o for o in outcomes if o.count == GOAL_N), None)
    if mine is None:
        return []
    peer = recorded_medians(RESULTS, PODMAN_LABEL, GOAL_N)
    lines = [f"Goals at N = {GOAL_N} (podman-compose figures: the last ones in this file):"]
    for phase, share in GOAL_SHARE.items():
        value, base = mine.median(phase), peer.get(phase)
        if value is None or base is None:
            lines.append(f"- {TITLES[phase]}: not measured on both sides")
            continue
        verdict = "met" if value <= share * base else "missed"
        lines.append(f"- {TITLES[phase]}: {value:.2f} s = {value / base:.0%} of podman-compose's "
                     f"{base:.2f} s (goal <= {share:.0%}): {verdict}")
    for phase, bound in GOAL_SECONDS.items():
        value = mine.median(phase)
        verdict = "not measured" if value is None else ("met" if value < bound else "missed")
        lines.append(f"- {TITLES[phase]}: {fmt(value)} s (goal < {bound:g} s): {verdict}")
    return lines


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def machine(load_before: str) -> str:
    return (f"{os.cpu_count()} cores, kernel {platform.release()}, load average {load_before} "
            f"before and {load()} after (1, 5, 15 min; the machine is shared with other work, "
            f"so figures under load are slower than on an idle machine)")


def record(section: list[str]) -> None:
    text = "\n".join(section).rstrip() + "\n"
    print(text)
    new = not RESULTS.exists()
    with RESULTS.open("a") as out:
        if new:
            out.write(RESULTS_HEADER)
        out.write("\n" + text)


def quiet_logs() -> None:
    """The runtime modules the bare row calls log at info: not on the benchmark's output."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=("podman", "pcompose"), required=True)
    parser.add_argument("-n", "--services", type=int, nargs="+", default=[10, 50, 200],
                        metavar="N", help="stack sizes to run (default: 10 50 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N; the table shows medians")
    parser.add_argument("--no-record", action="store_true", help="print only, leave RESULTS.md alone")
    parser.add_argument("--no-bare", action="store_true",
                        help="pcompose only, without the bare-runc row (by default, after each "
                        "`down` the bundles of the first `up` run again under `runc run -d` alone)")
    parser.add_argument("--ps-probe", action="store_true",
                        help="call `ps` over and over while the first `up -d` runs; its latencies")
    parser.add_argument("--large", action="store_true",
                        help="issue 16's large mode: N = 1,000 (one bridge network), with --ps-probe")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="sample the agent with py-spy during each N's first `up -d` and `down` "
                        "(raw stacks to FILE.<N> and FILE.<N>.down) and write where its time goes "
                        "per container")
    parser.add_argument("--tty", action="store_true",
                        help="each repetition twice, plain then on a pseudo-terminal (the progress "
                        "block redrawn in place): a row of each per N")
    args = parser.parse_args(argv)
    if args.large:
        args.services, args.ps_probe = [1000], True
    return args


def run_all(tool: Tool, outcomes: list[Outcome], repeat: int, workdir: Path,
            on_tty: list[Outcome] | None = None) -> None:
    """Each N `repeat` times; a failed run ends that N's repetitions, the next N still runs.
    With `on_tty`, each repetition runs plain and then on a pseudo-terminal, alternating, so
    both see the same machine."""
    for i, outcome in enumerate(outcomes):
        pairs = [(outcome, False)] + ([(on_tty[i], True)] if on_tty else [])
        templates: list[Template] = []  # one N's bundles, for the bare-runc row
        for _ in range(repeat):
            for kept, tty in pairs:
                tool.tty = tty
                if not run_once(tool, kept.count, workdir, kept, templates):
                    tool.tty = False
                    return
                bare = (f"; bare runc up {kept.bare['up'][-1]:.2f} s, down {kept.bare['down'][-1]:.2f} s"
                        if kept.bare["up"] else "")
                print(f"N={kept.count}{' tty' if tty else ''}: " + ", ".join(
                    f"{TITLES[p]} {kept.seconds[p][-1]:.2f} s" for p in PHASES) + bare,
                    file=sys.stderr, flush=True)
        tool.tty = False


def emit(section: list[str], keep: bool) -> None:
    if keep:
        record(section)
    else:
        print("\n".join(section))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs()
    command = "bench/bench_compose.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    tool = make(args.tool)
    started, load_before = dt.datetime.now(dt.UTC), load()
    header = [f"## {tool.label}, {started:%Y-%m-%d %H:%M} UTC",
              "", f"Command (as root, from the repository root): `.venv/bin/python {command}`", ""]
    reason = tool.unavailable()
    if reason and isinstance(tool, Podman):
        print(f"bench_compose: {reason}", file=sys.stderr)
        return 2
    if reason:
        # pcompose's own verbs may still be missing: that is a result worth recording.
        emit(header + [f"{tool.label}: not yet runnable ({reason})"], not args.no_record)
        return 0
    tool.ps_probe = args.ps_probe
    if isinstance(tool, Pcompose):
        tool.bare = not args.no_bare
        tool.profile = args.profile.resolve() if args.profile else None
    outcomes = [Outcome(n) for n in args.services]
    on_tty = [Outcome(n) for n in args.services] if args.tty else []
    with tempfile.TemporaryDirectory(prefix="pcompose-bench-compose-") as tmp:
        try:
            tool.prepare(Path(tmp))
            run_all(tool, outcomes, args.repeat, Path(tmp), on_tty)
        finally:
            leftovers = tool.finish()
    rows = table(tool, outcomes, args.repeat)
    bare_rows = [f"| {BARE_LABEL} | {o.count} | {fmt(o.bare_median('up'))} | - | - | "
                 f"{fmt(o.bare_median('down'))} |" for o in outcomes if o.bare["up"]]
    if bare_rows:
        rows += "\n" + "\n".join(bare_rows)
    if on_tty:
        tty_rows = table(tool, on_tty, args.repeat).splitlines()[2:]
        rows += "\n" + "\n".join(r.replace(f"| {tool.label} |", f"| {tool.label} (tty) |", 1)
                                  for r in tty_rows)
    section = header + [f"- versions: {tool.versions()}", f"- machine: {machine(load_before)}",
                        f"- repetitions per N: {args.repeat}", "", rows, ""]
    section += spread(outcomes) + [line.replace("- N=", "- tty N=", 1) for line in spread(on_tty)]
    problems = [p for o in outcomes + on_tty for p in o.problems] + leftovers
    section += [f"- problem: {p}" for p in problems]
    if isinstance(tool, Pcompose):
        section += agent_lines(outcomes)
        section += [""] + goals(outcomes) + bare_goals(outcomes)
        if tool.profile:
            section += [""] + profile_lines(tool.profile, outcomes)
    emit(section, not args.no_record)
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
