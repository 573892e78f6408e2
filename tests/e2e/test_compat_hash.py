"""`config --hash` prints the hash a running container is labelled with, as docker compose's
e2e test checks; limits applied in place keep both the container and that agreement."""

from __future__ import annotations

import json
import subprocess

from controllers import context
from tests.support import cgroupfs, convergence

LABEL = "com.docker.compose.config-hash"


def service(**keys: str) -> str:
    lines = ["services:", "  app:", "    image: busybox", "    stop_signal: SIGKILL"]
    lines += [f"    {k}: {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def printed_hash(stack) -> str:
    lines = stack.pc("config", "--hash", "*").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["app"]
    return lines[0].split()[1]


def container(stack) -> tuple[str, str, tuple[int, str]]:
    """(label, annotation the agent reads back, (main PID, creation time)) of the stack's one
    container, from its config.json under the state root and from runc."""
    cid = convergence.container_id(stack, f"{stack.project}-app-1")
    doc = json.loads((context.make(stack.root, stack.run_dir).layout.bundle(cid)
                      / "config.json").read_text())
    state = subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), "state", cid],
                           capture_output=True, text=True, check=True)
    notes = doc["annotations"]
    runc = json.loads(state.stdout)
    return notes.get(LABEL, ""), notes.get("io.pcompose.config-hash", ""), \
        (runc["pid"], runc["created"])


def memory_limit(stack) -> int:
    ctx = context.make(stack.root, stack.run_dir)
    cid = convergence.container_id(stack, f"{stack.project}-app-1")
    path = cgroupfs.v1_file(f"{ctx.cgroup_parent}/{stack.project}/{cid}", "memory.limit_in_bytes")
    return int(path.read_text())


def test_the_printed_hash_is_the_label_and_stays_so_through_a_limits_update(stack):
    stack.write(service(command='["sleep", "100000"]', mem_limit="64m", cpus="0.5"))
    stack.pc("up", "-d")
    label, annotation, process = container(stack)
    assert printed_hash(stack) == label == annotation

    stack.write(service(command='["sleep", "100000"]', mem_limit="96m", cpus="0.5"))
    stack.pc("up", "-d")
    assert memory_limit(stack) == 96 << 20
    after = container(stack)
    assert after[2] == process  # updated in place: neither recreated nor restarted
    assert printed_hash(stack) == after[0] == after[1] == label


def test_a_command_change_recreates_under_the_new_printed_hash(stack):
    stack.write(service(command='["sleep", "100000"]', mem_limit="64m"))
    stack.pc("up", "-d")
    label, _, process = container(stack)

    stack.write(service(command='["sleep", "200000"]', mem_limit="64m"))
    stack.pc("up", "-d")
    new_label, annotation, new_process = container(stack)
    assert new_process != process
    assert new_label != label
    assert printed_hash(stack) == new_label == annotation
