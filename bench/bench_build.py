"""Benchmark: Dockerfile builds with pcompose against buildah (`bud --layers`) and docker's BuildKit.

Run as root from the repository:

    bash bench/setup_build_peers.sh                                   # once, for buildah and docker
    .venv/bin/python bench/bench_build.py --tool pcompose --repeat 5
    .venv/bin/python bench/bench_build.py --tool buildah --tool docker --repeat 5

The workload is the issue's: a 3-stage Dockerfile on a busybox base made here (no registry),
a context of 500 files of 4 KiB and one 8 MiB blob, and 2000 files that .dockerignore leaves
out. Each repetition times four builds, each one CLI call timed with time.monotonic:
- cold: everything built again (--no-cache), the base image present;
- warm: the same build again, nothing changed;
- middle: one source file that the middle stage copies changed;
- arg: the build-arg that the last stage's ENV uses changed.
After the arg build the image's ENV must carry the new value (buildah 1.28 keeps every step
cached there: a wrong image), the last stage's layer must hold the whiteout of what its RUN
removed, and no layer a RUN made may hold run artefacts (/etc/hosts, /etc/resolv.conf,
/etc/hostname, /dev, /proc, /sys, /run entries the base did not have). Each tool has its
own state root, removed at the end. The tools take turns: each repetition runs every tool's
four builds, in an order that turns, so that a load that comes and goes on a shared machine
falls on them alike. A markdown table goes to stdout and is appended to
bench/RESULTS-build.md with the command line and the date."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import bench_compose
import compose_stack

RESULTS = BENCH / "RESULTS-build.md"
RESULTS_HEADER = "# Dockerfile builds: pcompose, buildah bud --layers, docker BuildKit\n"
SCENARIOS = ("cold", "warm", "middle", "arg")
TITLES = {"cold": "cold (--no-cache)", "warm": "warm, nothing changed",
          "middle": "one middle-stage source changed", "arg": "build-arg used in ENV changed"}
TAG = "localhost/pcompose-bench-build:latest"
ARTEFACTS = ("etc/hosts", "etc/resolv.conf", "etc/hostname")
ARTEFACT_DIRS = ("dev", "proc", "sys", "run")

DOCKERFILE = f"""\
ARG BASE={compose_stack.IMAGE}
FROM ${{BASE}} AS deps
RUN mkdir -p /deps && echo deps > /deps/version && dd if=/dev/zero of=/deps/blob bs=1024 count=64 2>/dev/null

FROM ${{BASE}} AS build
COPY --from=deps /deps /deps
COPY src/ /src/
RUN cat /src/d3/* | wc -c > /build.out && rm /deps/version

FROM ${{BASE}}
ARG VERSION=1
ENV APP_VERSION=${{VERSION}}
COPY --from=build /build.out /app/build.out
COPY blob /app/blob
RUN rm /bin/vi
CMD ["cat", "/app/build.out"]
"""


def make_context(ctx: Path) -> None:
    """The issue's context: 500 x 4 KiB under src/, an 8 MiB blob, 2000 ignored files."""
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / ".dockerignore").write_text("ignored\n")
    for i in range(500):
        folder = ctx / "src" / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(os.urandom(2048).hex().encode())
    (ctx / "blob").write_bytes(os.urandom(8 << 20))
    for i in range(2000):
        folder = ctx / "ignored" / f"i{i % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"x{i}").write_text("ignored\n")


class Builder:
    """One tool: how to set it up, build, read the result's ENV and layers, and clean up."""
    name = ""

    def unavailable(self) -> str | None:
        return None

    def prepare(self, workdir: Path, archive: Path) -> None:
        raise NotImplementedError

    def build(self, ctx: Path, version: str, no_cache: bool) -> None:
        raise NotImplementedError

    def env(self) -> list[str]:
        raise NotImplementedError

    def layers(self) -> list[set[str]]:
        """The member names of each layer of the built image, base first."""
        raise NotImplementedError

    def finish(self) -> list[str]:
        return []

    def versions(self) -> str:
        return ""


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if done.returncode != 0:
        print(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
              file=sys.stderr)
        last = ((done.stderr or done.stdout).strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{Path(argv[0]).name} exited {done.returncode}: {last}")
    return done


def _archive_layers(path: Path) -> list[set[str]]:
    """Member names per layer of a docker-archive (docker save, buildah push docker-archive:)."""
    with tarfile.open(path) as outer:
        doc = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        out = []
        for name in doc[0]["Layers"]:
            data = outer.extractfile(name).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as layer:
                out.append({m.name.lstrip("./") for m in layer.getmembers()})
        return out


class PcomposeBuilder(Builder):
    """This repository's pcompose: its own agent, state root, run dir and host netns (the
    bench_compose set-up), `pcompose build` of a one-service stack."""
    name = "pcompose"

    def __init__(self) -> None:
        self.tool = bench_compose.Pcompose()
        self.stack: Path | None = None

    def unavailable(self) -> str | None:
        done = bench_compose.quiet([str(self.tool.binary), "build", "--help"])
        return None if done.returncode == 0 else "`pcompose build --help` failed: no build verb"

    def prepare(self, workdir: Path, archive: Path) -> None:
        self.tool.prepare(workdir)
        self.stack = workdir / "compose.yaml"

    def build(self, ctx: Path, version: str, no_cache: bool) -> None:
        assert self.stack is not None
        self.stack.write_text(f"services:\n  app:\n    build:\n      context: {ctx}\n    image: {TAG}\n")
        argv = [*self.tool._global(), "-p", "bbench", "-f", str(self.stack), "build", "-q",
                "--build-arg", f"VERSION={version}"]
        _run([*argv, "--no-cache"] if no_cache else argv)

    def env(self) -> list[str]:
        out = _run([*self.tool._global(), "image", "inspect", TAG]).stdout
        return json.loads(out)[0]["Config"].get("Env") or []

    def layers(self) -> list[set[str]]:
        from runtime import images

        record = images.Store(self.tool.root).resolve(TAG)
        assert record is not None
        out = []
        for layer in record.layers:
            with tarfile.open(images.Store(self.tool.root).blob_path(layer.digest), mode="r:*") as tar:
                out.append({m.name.lstrip("./") for m in tar.getmembers()})
        return out

    def finish(self) -> list[str]:
        return self.tool.finish()

    def versions(self) -> str:
        return self.tool.versions()


class BuildahBuilder(Builder):
    """Debian's buildah: `buildah bud --layers --network none` with its own --root."""
    name = "buildah"

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:7]
        self.root = Path("/var/lib/pcompose-bench") / f"buildah-{tag}"
        self.runroot = Path("/run/pcompose-bench") / f"buildah-{tag}"

    def _b(self) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay"]

    def unavailable(self) -> str | None:
        return None if shutil.which("buildah") else "buildah is not installed (bash bench/setup_build_peers.sh)"

    def prepare(self, workdir: Path, archive: Path) -> None:
        _run([*self._b(), "pull", "--quiet", f"docker-archive:{archive}"])

    def build(self, ctx: Path, version: str, no_cache: bool) -> None:
        _run([*self._b(), "bud", "--layers", "--network", "none", "--pull-never", "--quiet",
              *(["--no-cache"] if no_cache else []), "--build-arg", f"VERSION={version}",
              "-t", TAG, "-f", str(ctx / "Dockerfile"), str(ctx)])

    def env(self) -> list[str]:
        doc = json.loads(_run([*self._b(), "inspect", "--type", "image", TAG]).stdout)
        return doc["OCIv1"]["config"].get("Env") or []

    def layers(self) -> list[set[str]]:
        with tempfile.TemporaryDirectory(prefix="pcompose-bench-") as tmp:
            path = Path(tmp) / "image.tar"
            _run([*self._b(), "push", "--quiet", TAG, f"docker-archive:{path}"])
            return _archive_layers(path)

    def finish(self) -> list[str]:
        bench_compose.quiet([*self._b(), "rm", "--all"])
        left = _unmount_under(self.root) + _unmount_under(self.runroot)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)
        return left

    def versions(self) -> str:
        return bench_compose.first_line(["buildah", "--version"])


class DockerBuilder(Builder):
    """Debian's docker.io with BuildKit: a dockerd of its own (data root, exec root, socket;
    no bridge, no iptables) started here and stopped by PID; builds with `--network none`."""
    name = "docker"
    binary = "/usr/bin/docker"  # a newer docker CLI elsewhere on PATH may shadow Debian's

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:7]
        self.root = Path("/var/lib/pcompose-bench") / f"docker-{tag}"
        self.exec_root = Path("/run/pcompose-bench") / f"docker-{tag}"
        self.socket = self.exec_root / "docker.sock"
        self.daemon: subprocess.Popen | None = None

    def _d(self) -> list[str]:
        return [self.binary, "-H", f"unix://{self.socket}"]

    def unavailable(self) -> str | None:
        if not Path(self.binary).exists() or not shutil.which("dockerd"):
            return "docker.io is not installed (bash bench/setup_build_peers.sh)"
        return None

    def prepare(self, workdir: Path, archive: Path) -> None:
        self.exec_root.mkdir(parents=True)
        self.root.mkdir(parents=True)
        with open(self.root / "dockerd.log", "ab") as log:  # the daemon keeps its own copy of the fd
            self.daemon = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root), "--exec-root", str(self.exec_root),
                 "--pidfile", str(self.exec_root / "dockerd.pid"), "-H", f"unix://{self.socket}",
                 "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                 "--storage-driver", "overlay2"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while bench_compose.quiet([*self._d(), "version"]).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer; see {self.root}/dockerd.log")
            time.sleep(0.2)
        _run([*self._d(), "load", "-q", "-i", str(archive)])

    def build(self, ctx: Path, version: str, no_cache: bool) -> None:
        _run([*self._d(), "build", "-q", "--network", "none", *(["--no-cache"] if no_cache else []),
              "--build-arg", f"VERSION={version}", "-t", TAG, "-f", str(ctx / "Dockerfile"), str(ctx)],
             env={**os.environ, "DOCKER_BUILDKIT": "1"})

    def env(self) -> list[str]:
        return json.loads(_run([*self._d(), "image", "inspect", TAG]).stdout)[0]["Config"].get("Env") or []

    def layers(self) -> list[set[str]]:
        with tempfile.TemporaryDirectory(prefix="pcompose-bench-") as tmp:
            path = Path(tmp) / "image.tar"
            _run([*self._d(), "save", "-o", str(path), TAG])
            return _archive_layers(path)

    def finish(self) -> list[str]:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        left = _unmount_under(self.root) + _unmount_under(self.exec_root)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        return left

    def versions(self) -> str:
        return bench_compose.first_line([self.binary, "--version"])


def _unmount_under(top: Path) -> list[str]:
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    left = []
    for point in sorted({p for p in points if p.startswith(f"{top}/") or p == str(top)}, key=len, reverse=True):
        if bench_compose.quiet(["umount", "-l", point]).returncode == 0:
            left.append(f"mount left, unmounted: {point}")
        else:
            left.append(f"mount still there: {point}")
    return left


TOOLS = {"pcompose": PcomposeBuilder, "buildah": BuildahBuilder, "docker": DockerBuilder}


def correctness(builder: Builder, version: str) -> list[str]:
    """What is wrong with the image of the last build (empty: nothing)."""
    problems = []
    env = builder.env()
    if f"APP_VERSION={version}" not in env:
        got = next((e for e in env if e.startswith("APP_VERSION=")), "no APP_VERSION")
        problems.append(f"ENV after the build-arg change: {got}, wanted APP_VERSION={version}")
    layers = builder.layers()
    base, made = layers[0], layers[1:]
    if not any("bin/.wh.vi" in layer for layer in made):
        problems.append("no whiteout bin/.wh.vi for the removed /bin/vi")
    for layer in made:
        for name in layer:
            top = name.split("/", 1)[0]
            if (name in ARTEFACTS or top in ARTEFACT_DIRS) and name not in base:
                problems.append(f"run artefact in a layer: {name}")
    return sorted(set(problems))


class Run:
    """One tool's part of the run: its own context (the middle scenario edits it), the version
    its last build used, its times and what was wrong with its images."""

    def __init__(self, builder: Builder, workdir: Path) -> None:
        self.builder, self.ctx = builder, workdir / "ctx"
        self.version = "1"
        self.seconds: dict[str, list[float]] = {s: [] for s in SCENARIOS}
        self.problems: list[str] = []
        make_context(self.ctx)
        builder.prepare(workdir, compose_stack.write_image_archive(workdir / "busybox.tar"))
        builder.build(self.ctx, self.version, False)  # first build: the cache exists before any warm one

    def timed(self, scenario: str, *, no_cache: bool = False) -> None:
        start = time.monotonic()
        self.builder.build(self.ctx, self.version, no_cache)
        self.seconds[scenario].append(time.monotonic() - start)

    def repetition(self, rep: int) -> None:
        self.timed("cold", no_cache=True)
        self.timed("warm")
        (self.ctx / "src" / "d3" / "f3.txt").write_text(f"changed in repetition {rep}\n")
        self.timed("middle")
        self.version = f"{rep + 2}"
        self.timed("arg")
        self.problems += [p for p in correctness(self.builder, self.version) if p not in self.problems]


def run_tools(runs: dict[str, Run], repeat: int) -> None:
    """Each repetition runs every tool's four builds, the tools' order turning each time: a
    load that comes and goes on a shared machine then falls on all of them alike."""
    names = list(runs)
    for rep in range(repeat):
        turn = names[rep % len(names):] + names[:rep % len(names)]
        for name in turn:
            run = runs[name]
            if run.problems and run.problems[0].startswith("failed"):
                continue
            try:
                run.repetition(rep)
            except (RuntimeError, SystemExit) as err:
                run.problems.insert(0, f"failed: {err}")


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", action="append", choices=sorted(TOOLS), help="default: all three")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS.name}")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: builds make overlay mounts and containers")
    before = bench_compose.load()
    rows, notes = [], []
    runs: dict[str, Run] = {}
    with contextlib.ExitStack() as cleanup:
        for name in args.tool or list(TOOLS):
            builder = TOOLS[name]()
            missing = builder.unavailable()
            if missing:
                notes.append(f"- {name}: skipped, {missing}")
                continue
            tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pcompose-bench-build-")))
            cleanup.callback(lambda name=name, builder=builder: notes.extend(
                f"- {name}: {line}" for line in builder.finish()))
            try:
                runs[name] = Run(builder, tmp)
            except (RuntimeError, SystemExit) as err:
                rows.append(f"| {name} | " + " | ".join("-" for _ in SCENARIOS) + f" | failed: {err} |")
        run_tools(runs, args.repeat)
    for name, run in runs.items():
        rows.append(f"| {name} | " + " | ".join(fmt(run.seconds[s]) for s in SCENARIOS) + " | "
                    + ("correct" if not run.problems else "; ".join(run.problems)[:300]) + " |")
        notes.append(f"- {name}: {run.builder.versions()}")
    section = [f"## {dt.datetime.now().isoformat(timespec='minutes')}: median of {args.repeat}",
               "", f"`{shlex.join([sys.executable, *sys.argv])}`", "",
               "| tool | " + " | ".join(TITLES[s] for s in SCENARIOS) + " | image after the arg change |",
               "|---|" + "---|" * (len(SCENARIOS) + 1), *rows, "", *notes,
               f"- {bench_compose.machine(before)}"]
    text = "\n".join(section) + "\n"
    print(text)
    if not args.no_record:
        new = not RESULTS.exists()
        with RESULTS.open("a") as out:
            if new:
                out.write(RESULTS_HEADER)
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
