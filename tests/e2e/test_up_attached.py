"""`up` without -d: progress, then every container's log lines with prefixes; Ctrl-C stops the
stack (stop, not remove), as docker compose does. And `up --watch` resubmits valid changes only."""

from __future__ import annotations

import json
import signal
import subprocess
import threading

from tests.support import waiting

STACK = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo hello from web; exec sleep 1000"]
  worker:
    image: busybox
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo worker ready; exec sleep 1000"]
"""


class Lines:
    """A process's output read in the background, so a test can wait for a line."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0) -> bool:
        try:
            return waiting.wait_for(lambda: any(text in line for line in self.lines),
                                    timeout=timeout, what=repr(text))
        except AssertionError:
            return False


def stop(proc: subprocess.Popen) -> int:
    """Ctrl-C, then wait; a process that does not end is killed (and the test fails)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def running(stack) -> tuple[dict[str, int], int]:
    """Each container's main PID as the runtime shows it, and the stored generation."""
    pids = {name: int(stack.pc("inspect", "-f", "{{.State.Pid}}", name).stdout)
            for name in states(stack)}
    status, project = stack.agent_call("GET", f"/v1/projects/{stack.project}")
    assert status == 200, project
    return pids, project["generation"]


def states(stack) -> dict[str, str]:
    rows = stack.pc("-p", stack.project, "ps", "-a", "--format", "json").stdout.splitlines()
    return {json.loads(r)["Name"]: json.loads(r)["State"] for r in rows}


ONCE = """\
  once:
    image: busybox
    command: ["sh", "-c", "sleep 1; echo once done; exit 3"]
"""


def test_attached_up_streams_logs_and_ctrl_c_stops_the_stack(stack):
    stack.write(STACK + ONCE)
    p = stack.project
    proc = stack.start("up")
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        assert out.wait_for("web-1     | hello from web"), (out.lines, err.lines)
        assert out.wait_for("worker-1  | worker ready"), (out.lines, err.lines)
        assert err.wait_for(f"Container {p}-web-1  Started")
        assert out.lines[0] == "Attaching to once-1, web-1, worker-1"
        assert out.wait_for("once-1    | once done"), out.lines
        assert out.wait_for("once-1 exited with code 3"), out.lines
    finally:
        code = stop(proc)
    assert code == 0
    assert err.wait_for("Gracefully stopping...")
    assert err.wait_for(f"Container {p}-worker-1  Stopped")
    assert states(stack) == {f"{p}-once-1": "exited", f"{p}-web-1": "exited",
                             f"{p}-worker-1": "exited"}


def test_watch_submits_valid_changes_and_keeps_the_stack_on_a_bad_one(stack):
    stack.write(STACK)
    p = stack.project
    proc = stack.start("up", "-d", "--watch")
    try:
        err = Lines(proc.stderr)
        assert err.wait_for("Watching"), err.lines
        before = running(stack)
        assert set(before[0]) == {f"{p}-web-1", f"{p}-worker-1"}
        assert all(before[0].values())
        stack.write(STACK + "    ports: [\"x\"]\n")
        assert err.wait_for("(the running stack is left as it is)"), err.lines
        assert err.wait_for("compose.yaml:10:"), err.lines
        assert running(stack) == before  # the same processes; nothing submitted
        stack.write(STACK.replace("  worker:", "  extra:\n    extends:\n      file: extra.yaml\n"
                                  "      service: base\n  worker:"))
        assert err.wait_for("extra.yaml: "), err.lines  # not there yet: reported, stack kept
        assert running(stack) == before
        stack.write("services:\n  base:\n    image: busybox\n    stop_signal: SIGKILL\n"
                    "    command: [\"sleep\", \"1000\"]\n", "extra.yaml")
        stack.write(stack.dir.joinpath("compose.yaml").read_text() + "\n")
        assert err.wait_for(f"Container {p}-extra-1  Started"), err.lines
        # Watched from now on: the loader read it.
        assert err.wait_for(f"Watching {stack.dir}/compose.yaml, {stack.dir}/extra.yaml")
        stack.write("services:\n  base:\n    image: busybox\n    stop_signal: SIGKILL\n"
                    "    command: [\"sleep\", \"2000\"]\n", "extra.yaml")
        assert err.wait_for(f"Container {p}-extra-1  Recreate"), err.lines  # a file it reads
    finally:
        stop(proc)
    assert states(stack)[f"{p}-extra-1"] == "running"  # -d: Ctrl-C leaves the stack running


def test_up_shows_which_resource_failed_and_why(stack):
    stack.write("""\
services:
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    depends_on:
      db:
        condition: service_healthy
""")
    p = stack.project
    done = stack.pc("up", "-d", check=False)
    assert done.returncode == 1
    assert f"Container {p}-db-1  Error container {p}-db-1 is unhealthy" in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"pcompose: error: project {p}: service:db await: container {p}-db-1 is unhealthy "
        "(the agent keeps trying)")
    assert f"{p}-web-1" not in states(stack)  # it waits for a healthy db
