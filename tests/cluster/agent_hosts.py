"""Simulated hosts of a cluster with their agents, for every test here that starts agents: each
host its own netns, state root, run dir and stack dir (tests/e2e's Stack), its agent started
by PID, killed (as a host that died) or stopped, and all of it removed after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.cluster.etcd_harness import EtcdCluster
from tests.e2e import conftest as e2e
from tests.support import waiting


def bare_stack() -> e2e.Stack:
    """A host's dirs and netns, without the image tests/e2e's make_stack loads."""
    project = "t" + uuid.uuid4().hex[:7]
    root = Path("/var/lib/pcompose-test") / project
    run_dir = Path("/run/pcompose-test") / project
    stack_dir = root.parent / f"{project}-stack" / project
    for path in (root, run_dir, stack_dir):
        path.mkdir(parents=True)
    host = f"pce2e{project}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    return e2e.Stack(root, run_dir, stack_dir, project, host)


class Host:
    """A simulated host with an agent started by PID; `name` names it in failures."""

    def __init__(self, stack: e2e.Stack | None = None, name: str = "") -> None:
        self.stack = stack if stack is not None else bare_stack()
        self.name = name
        self.agent: subprocess.Popen | None = None

    def _who(self) -> str:
        return f"{self.name}'s agent" if self.name else "the agent"

    def start_agent(self, *args: str) -> None:
        with open(self.stack.dir / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(
                self.stack.argv("agent", "--log-format", "json", *args), env=self.stack.env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        waiting.wait_for(lambda: self.stack.agent_pid() or self._died(), timeout=60,
                         what=f"{self._who()} to answer")

    def _died(self) -> bool:
        if self.agent is not None and self.agent.poll() is not None:
            raise AssertionError(f"{self._who()} exited:\n" + self.log()[-3000:])
        return False

    def log(self) -> str:
        return (self.stack.dir / "agent.log").read_text(errors="replace")

    def kill_agent(self) -> None:
        """kill -9 of the agent: as far as the cluster can tell, the host died."""
        assert self.agent is not None
        os.kill(self.agent.pid, signal.SIGKILL)
        self.agent.wait()

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()

    def nodes(self) -> list[dict]:
        done = self.stack.pc("node", "ls", "--format", "json")
        return [json.loads(line) for line in done.stdout.splitlines()]

    def remove(self) -> None:
        try:
            self.stop_agent()
        finally:
            e2e.remove_stack(self.stack)


def join(hosts: list[Host], cluster: EtcdCluster, name: str, address: str,
         *labels: str, flags: tuple[str, ...] = ()) -> Host:
    """A new host in `hosts` whose agent joins `cluster` as node `name` at `address`."""
    host = Host()
    hosts.append(host)
    host.start_agent("--cluster", ",".join(cluster.endpoints), "--node-name", name,
                     "--advertise-addr", address, *[f"--label={label}" for label in labels],
                     *flags)
    return host


def removed_after(fill: Callable[[list[Host]], None] | None = None) -> Iterator[list[Host]]:
    """For a fixture: a list of hosts (those `fill` joins, then the test's), each removed
    after, pass or fail."""
    made: list[Host] = []
    try:
        if fill is not None:
            fill(made)
        yield made
    finally:
        for host in made:
            host.remove()


def two_nodes(cluster: EtcdCluster, busybox_archive: Path) -> Iterator[list[Host]]:
    """For a fixture: h1 and h2 (10.99.0.1 and .2) in `cluster`, busybox loaded on each."""
    def fill(made: list[Host]) -> None:
        for n in (1, 2):
            host = join(made, cluster, f"h{n}", f"10.99.0.{n}")
            host.stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    return removed_after(fill)
