"""Dependency conditions, restart policies and OOM kills as a user checks them: from the start
and end times, PIDs, restart counts and OOM flag the runtime records (`inspect`, `ps`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal

from tests.e2e import conftest
from tests.support import convergence, waiting


def inspect(stack, name: str) -> dict:
    [found] = json.loads(stack.pc("inspect", name).stdout)
    return found


def inspect_while_restarting(stack, name: str) -> dict:
    """inspect, or {} while runc makes the container again for a restart (then it is briefly
    not listed)."""
    done = stack.pc("inspect", name, check=False)
    found = json.loads(done.stdout or "[]")
    return found[0] if found else {}


def state(stack, service: str) -> dict:
    return inspect(stack, f"{stack.project}-{service}-1")["State"]


def restarting_state(stack, service: str) -> dict:
    return inspect_while_restarting(stack, f"{stack.project}-{service}-1").get("State", {})


def when(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    assert moment.year > 1, f"no time recorded: {text}"
    return moment


def test_a_service_waits_until_its_dependency_completed_successfully(stack):
    # The job runs a second, so a dependant started beside it would start before it ended.
    stack.write("services:\n"
                '  job:\n    image: busybox\n    command: ["sh", "-c", "sleep 1; exit 0"]\n'
                + conftest.sleeper("app", depends_on="{job: {condition: service_completed_successfully}}"))
    stack.pc("up", "-d")
    job, app = state(stack, "job"), state(stack, "app")
    assert (job["Status"], job["ExitCode"]) == ("exited", 0)
    assert app["Status"] == "running"
    assert when(job["StartedAt"]) < when(job["FinishedAt"]) <= when(app["StartedAt"])


def test_a_service_whose_dependency_failed_is_never_started(stack):
    stack.write("services:\n"
                '  job:\n    image: busybox\n    command: ["sh", "-c", "sleep 1; exit 3"]\n'
                + conftest.sleeper("app", depends_on="{job: {condition: service_completed_successfully}}")
                + conftest.sleeper("free"))
    assert stack.pc("up", "-d", check=False).returncode != 0
    job = state(stack, "job")
    assert (job["Status"], job["ExitCode"]) == ("exited", 3)
    rows = convergence.ps(stack)
    # The positive control: what does not depend on the job runs.
    assert rows[f"{stack.project}-free-1"]["State"] == "running"
    assert f"{stack.project}-app-1" not in rows


def killed_and_restarted(stack, service: str) -> None:
    """Kills the container's process from outside (not through pcompose), then waits until
    the runtime shows it running again under a new PID, restarted once."""
    before = state(stack, service)
    os.kill(before["Pid"], signal.SIGKILL)
    name = f"{stack.project}-{service}-1"
    after = waiting.wait_for(
        lambda: (found := inspect_while_restarting(stack, name))
        and found["State"]["Running"] and found["State"]["Pid"] not in (0, before["Pid"])
        and found, what=f"{name} restarted")
    assert after["RestartCount"] == 1
    assert when(after["State"]["StartedAt"]) > when(before["StartedAt"])


def test_always_and_unless_stopped_restart_a_killed_process(stack):
    stack.write("services:\n" + conftest.sleeper("always", restart="always")
                + conftest.sleeper("unless", restart="unless-stopped"))
    stack.pc("up", "-d")
    killed_and_restarted(stack, "always")
    killed_and_restarted(stack, "unless")


def test_always_and_unless_stopped_leave_a_stopped_container_stopped(stack):
    stack.write("services:\n" + conftest.sleeper("always", restart="always")
                + conftest.sleeper("unless", restart="unless-stopped")
                + conftest.sleeper("control", restart="always"))
    stack.pc("up", "-d")
    stack.pc("stop", "always", "unless")
    # The agent restarts a container killed after the stop: once it has, it has seen the
    # stopped ones' exits too, and left them.
    killed_and_restarted(stack, "control")
    for service in ("always", "unless"):
        found = inspect(stack, f"{stack.project}-{service}-1")
        assert (found["State"]["Status"], found["RestartCount"]) == ("exited", 0), service


def test_after_an_agent_restart_what_died_meanwhile_restarts_and_what_was_stopped_stays(stack):
    """As after dockerd's restart: `unless-stopped` stays stopped if the user stopped it, what
    died while the agent was away restarts, and `no` stays exited."""
    stack.write("services:\n" + conftest.sleeper("unless", restart="unless-stopped")
                + conftest.sleeper("died", restart="unless-stopped")
                + conftest.sleeper("never", restart='"no"'))
    stack.pc("up", "-d")
    stack.pc("stop", "unless")
    convergence.kill_9(stack.agent_pid())
    died = state(stack, "died")["Pid"]
    convergence.kill_9(died)
    convergence.kill_9(state(stack, "never")["Pid"])
    with convergence.agent_alone(stack):
        waiting.wait_for(lambda: restarting_state(stack, "died").get("Running"),
                         what="died running again")
        assert state(stack, "died")["Pid"] != died
        assert state(stack, "unless")["Status"] == "exited"
        assert state(stack, "never")["Status"] == "exited"


def test_after_an_agent_restart_a_stopped_always_container_runs_again(stack):
    """As after dockerd's restart; while the agent that was asked to stop it runs, it stays
    stopped (test_always_and_unless_stopped_leave_a_stopped_container_stopped)."""
    stack.write("services:\n" + conftest.sleeper("always", restart="always"))
    stack.pc("up", "-d")
    stack.pc("stop", "always")
    before = state(stack, "always")
    assert before["Status"] == "exited"
    convergence.kill_9(stack.agent_pid())
    with convergence.agent_alone(stack):
        after = waiting.wait_for(lambda: (s := restarting_state(stack, "always")).get("Running")
                                 and s,
                                 what="the stopped `always` container running again")
        assert when(after["StartedAt"]) > when(before["FinishedAt"])


def test_a_container_past_its_memory_limit_is_reported_oom_killed(stack):
    # dd's one 64 MiB buffer is more than the 16 MiB limit (and the 32 MiB with swap).
    stack.write("services:\n  hog:\n    image: busybox\n"
                '    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]\n'
                "    mem_limit: 16m\n"
                + conftest.sleeper("calm", mem_limit="16m"))
    stack.pc("up", "-d", check=False)
    name = f"{stack.project}-hog-1"
    found = waiting.wait_for(lambda: (s := inspect(stack, name)["State"])["Status"] == "exited"
                             and s, what=f"{name} to exit")
    assert (found["OOMKilled"], found["ExitCode"]) == (True, 137)
    row = convergence.ps(stack)[name]
    assert (row["State"], row["ExitCode"]) == ("exited", 137)
    # The control: a container under the same limit that stays within it is not reported.
    calm = state(stack, "calm")
    assert (calm["Status"], calm["OOMKilled"]) == ("running", False)
