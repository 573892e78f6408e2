"""The pcompose command as a user runs it: a state root, a run dir, a stack dir, a busybox image,
and an agent the CLI starts itself, which every fixture stops by PID afterwards."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import cgroupfs, oci_image, waiting

REPO = Path(__file__).resolve().parents[2]


def _interruptible() -> None:
    """Ctrl-C as on a user's terminal: a suite started in the background by a non-interactive
    shell (`./scripts/test.sh &`) inherits SIGINT ignored, and so would the pcompose it runs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@dataclass
class Stack:
    """One user's machine as the CLI sees it: `stack.pc("up", "-d")` runs pcompose in `dir`."""

    root: Path
    run_dir: Path
    dir: Path
    project: str
    host_netns: str = ""  # the simulated host the agent runs its bridges and rules in

    def argv(self, *args: str) -> list[str]:
        netns = ["--host-netns", f"/run/netns/{self.host_netns}"] if self.host_netns else []
        return [sys.executable, "-m", "reconciler.cli", "--root", str(self.root),
                "--run-dir", str(self.run_dir), *netns, *args]

    @staticmethod
    def env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "PCOMPOSE_"))}
        env["PYTHONPATH"] = str(REPO)
        return env

    def pc(self, *args: str, check: bool = True, timeout: float = 120,
           input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(*args), cwd=cwd or self.dir, capture_output=True,
                              text=True, timeout=timeout, env=self.env(), input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"pcompose {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def start(self, *args: str, **kw) -> subprocess.Popen:
        """pcompose in the background (an attached `up`); the caller waits for it."""
        kw.setdefault("preexec_fn", _interruptible)
        return subprocess.Popen(self.argv(*args), cwd=self.dir, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def write(self, text: str, name: str = "compose.yaml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def agent_call(self, method: str, path: str):
        """The agent's API over its socket, for what a test checks beside the CLI."""
        conn = _Unix(str(self.run_dir / "agent.sock"))
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def agent_pid(self) -> int | None:
        try:
            return self.agent_call("GET", "/v1/version")[1]["pid"]
        except OSError:
            return None


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("agent", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory) -> Path:
    """A docker-archive of the host's busybox, tagged busybox:latest."""
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    return oci_image.write_docker_archive(path, [oci_image.busybox_layer()], ["busybox:latest"])


@contextlib.contextmanager
def own_agent(stack: Stack, resync: float) -> Iterator[subprocess.Popen]:
    """An agent with the given resync, started before the CLI would start its own (with 30 s);
    on the way out the project is taken down and the agent stopped."""
    process = subprocess.Popen(stack.argv("agent", "--resync", str(resync)), env=stack.env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert waiting.wait_for(lambda: stack.agent_pid() == process.pid), "the agent did not answer"
        yield process
    finally:
        if process.poll() is None:
            stack.pc("-p", stack.project, "down", "-v", "-t", "0", check=False)
            process.terminate()
        process.wait(timeout=30)


def sleeper(name: str, **extra: str) -> str:
    """A service that sleeps and stops at once, with `extra` keys, as compose.yaml lines."""
    lines = [f"  {name}:", "    image: busybox", '    command: ["sleep", "100000"]',
             "    stop_signal: SIGKILL"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _stop_agent(stack: Stack) -> None:
    pid = stack.agent_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    try:
        waiting.wait_for(lambda: _ended(pid), timeout=5, what=f"the agent {pid} to end")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def leftovers(stack: Stack) -> list[str]:
    """What a removed stack must not leave: conmon, mounts, netns, cgroups, links, nft table,
    volume dirs."""
    from controllers import context
    from runtime.net import names

    ctx = context.make(stack.root, stack.run_dir)
    if stack.host_netns and not Path(f"/run/netns/{stack.host_netns}").exists():
        return ["the simulated host's netns is gone: nothing could be checked in it"]
    found = []
    root = str(stack.root)
    found += [line for line in Path("/proc/mounts").read_text().splitlines()
              if root in line or str(stack.run_dir) in line]
    netns_dir = stack.run_dir / "netns"
    found += [f"netns {p.name}" for p in netns_dir.glob("*")] if netns_dir.exists() else []
    found += [str(p) for p in cgroupfs.dirs(f"{ctx.cgroup_parent}/{stack.project}") if p.exists()]
    netns = ["ip", "-n", stack.host_netns] if stack.host_netns else ["ip"]
    links = subprocess.run([*netns, "-o", "link", "show"], capture_output=True, text=True).stdout
    bridge = names.bridge(ctx.agent, f"{stack.project}_default")
    found += [f"link {bridge}"] if f" {bridge}:" in links else []
    found += [f"link {line.split()[1]}" for line in links.splitlines()
              if f"pcompose {ctx.agent}" in line]
    in_host = ["ip", "netns", "exec", stack.host_netns] if stack.host_netns else []
    tables = subprocess.run([*in_host, "nft", "list", "tables"], capture_output=True,
                            text=True).stdout
    found += [f"nft {names.table(ctx.agent)}"] if names.table(ctx.agent) in tables.split() else []
    volumes = stack.root / "volumes"
    found += [f"volume {p.name}" for p in volumes.glob(f"{stack.project}_*")]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"conmon" in cmdline.split(b"\0")[0] and str(stack.run_dir).encode() in cmdline:
                found.append(f"conmon {proc.name}")
    return found


def make_stack(busybox_archive: Path, project: str) -> Stack:
    root = Path("/var/lib/pcompose-test") / project
    run_dir = Path("/run/pcompose-test") / project
    # The directory names the project, as it does for docker compose.
    stack_dir = root.parent / f"{project}-stack" / project
    for path in (root, run_dir, stack_dir):
        path.mkdir(parents=True)
    host = f"pce2e{project}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
    stack = Stack(root, run_dir, stack_dir, project, host)
    try:
        stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    except BaseException:
        remove_stack(stack)
        raise
    return stack


def _sweep(stack: Stack) -> None:
    """What `down -v` should have removed, removed by force when it did not (a failed test):
    containers under this run dir, mounts under the root and run dir, the agent's cgroups."""
    from controllers import context

    runc_root = stack.run_dir / "runc"
    if runc_root.exists():
        for entry in runc_root.iterdir():
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", entry.name],
                           capture_output=True, check=False)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in reversed(mounts):
        if point.startswith((f"{stack.root}/", f"{stack.run_dir}/")):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    parent = context.make(stack.root, stack.run_dir).cgroup_parent.strip("/")
    for base in Path("/sys/fs/cgroup").iterdir():
        top = base / parent
        if top.is_dir() and not top.is_symlink():
            for cgroup in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
                if cgroup.is_dir():
                    cgroup.rmdir()
            top.rmdir()


def remove_stack(stack: Stack) -> None:
    try:
        if stack.agent_pid() is not None:
            stack.pc("-p", stack.project, "down", "-v", "-t", "0", check=False)
    finally:
        _stop_agent(stack)
        _sweep(stack)
        for path in (stack.dir.parent, stack.root, stack.run_dir):
            shutil.rmtree(path, ignore_errors=True)
        if stack.host_netns:
            subprocess.run(["ip", "netns", "delete", stack.host_netns], check=False)


@pytest.fixture
def stack(busybox_archive) -> Stack:
    """A fresh machine for one test; `down -v` and the agent's end afterwards, pass or fail."""
    made = make_stack(busybox_archive, "t" + uuid.uuid4().hex[:7])
    try:
        yield made
    finally:
        remove_stack(made)
