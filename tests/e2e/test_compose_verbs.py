"""docker compose's create, rm, scale, wait, attach and volumes through the CLI, on real
containers: what each prints, its exit code, and what the agent does afterwards."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess

import pytest

from tests.e2e import conftest
from tests.support.waiting import wait_for

RESYNC = 1.0  # the agent these tests start looks at every project again this often


@pytest.fixture
def agent(stack):
    """An agent with a short resync: what a test sees after two passes is what the agent
    leaves for good."""
    with conftest.own_agent(stack, RESYNC) as process:
        yield process


def reconciles(stack) -> int:
    """Reconciles the agent has finished (all projects: a test has one)."""
    conn = conftest._Unix(str(stack.run_dir / "agent.sock"))
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("pcompose_reconciles_total{"))


def after_two_passes(stack) -> None:
    """Until a reconcile that began after now has ended (the one in flight may not count)."""
    start = reconciles(stack)
    assert wait_for(lambda: reconciles(stack) >= start + 2), "the agent stopped reconciling"


def containers(stack) -> dict[str, dict]:
    """`ps -a --format json`, by container name."""
    out = stack.pc("ps", "-a", "--format", "json").stdout
    return {row["Name"]: row for row in map(json.loads, out.splitlines())}


def pid_of(stack, name: str) -> int:
    return int(stack.pc("inspect", "-f", "{{.State.Pid}}", name).stdout)


TWO = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL  # sleep as PID 1 ignores SIGTERM: no grace period to wait out
    command: ["sleep", "1000"]
    volumes: [data:/data]
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
volumes:
  data:
"""


def test_create_makes_containers_that_stay_created_until_start(stack, agent):
    p = stack.project
    stack.write(TWO)
    done = stack.pc("create")
    lines = done.stderr.splitlines()
    for name in (f"{p}-web-1", f"{p}-db-1"):
        assert f"Container {name}  Created" in lines, done.stderr
        assert f"Container {name}  Started" not in lines, done.stderr
    assert f"Volume {p}_data  Created" in lines
    assert {n: c["State"] for n, c in containers(stack).items()} == {
        f"{p}-web-1": "created", f"{p}-db-1": "created"}
    after_two_passes(stack)
    assert {c["State"] for c in containers(stack).values()} == {"created"}
    assert stack.pc("ps").stdout.splitlines()[1:] == []  # ps shows what runs

    started = stack.pc("start")
    assert f"Container {p}-web-1  Started" in started.stderr.splitlines(), started.stderr
    assert {c["State"] for c in containers(stack).values()} == {"running"}
    # create again changes nothing that runs
    again = stack.pc("create")
    assert f"Container {p}-web-1  Running" in again.stderr.splitlines(), again.stderr
    assert {c["State"] for c in containers(stack).values()} == {"running"}


def test_create_refuses_what_it_cannot_do_before_making_anything(stack, agent):
    stack.write(TWO.replace("\nvolumes:", "\n  other:\n    image: busybox:nope\nvolumes:"))
    for argv, message in (
            (["create", "--force-recreate", "--no-recreate"], "incompatible"),
            (["create", "--pull", "sometimes"], 'invalid --pull option "sometimes"'),
            (["create", "--pull", "never"], "image busybox:nope is not in the store"),
            (["create", "nope"], "no such service: nope")):
        done = stack.pc(*argv, check=False)
        assert done.returncode == 1 and message in done.stderr, done.stderr
    assert containers(stack) == {}
    # The images of the services named are here: `never` makes them.
    stack.pc("create", "--pull", "never", "web")
    assert set(containers(stack)) == {f"{stack.project}-web-1"}
    # --build builds what has a build section: a context without a Dockerfile is refused, and
    # the container it would have made is not made.
    stack.write(TWO.replace("\nvolumes:", "\n  other:\n    image: mine\n    build: .\nvolumes:"))
    done = stack.pc("create", "--build", "other", check=False)
    assert done.returncode == 1 and "Dockerfile" in done.stderr, done.stderr
    assert f"{stack.project}-other-1" not in containers(stack)
    assert stack.pc("create", "--build", "web").returncode == 0  # nothing of web to build


def test_rm_asks_removes_a_stopped_container_and_up_makes_it_again(stack, agent):
    p = stack.project
    stack.write(TWO)
    stack.pc("up", "-d")
    db = pid_of(stack, f"{p}-db-1")
    none = stack.pc("rm", "-f")
    assert none.stderr == "No stopped containers\n" and none.stdout == ""
    stack.pc("stop", "web")

    kept = stack.pc("rm", "web", input="n\n")
    assert kept.stdout == f"Going to remove {p}-web-1\n" and kept.returncode == 0
    assert containers(stack)[f"{p}-web-1"]["State"] == "exited"
    gone = stack.pc("rm", "web", input="y\n")
    assert gone.stdout == f"Going to remove {p}-web-1\n"
    assert gone.stderr.splitlines() == [f"Container {p}-web-1  Removing",
                                        f"Container {p}-web-1  Removed"]
    assert set(containers(stack)) == {f"{p}-db-1"}

    # Neither the restart policy nor a resync makes it again while the project is wanted.
    after_two_passes(stack)
    assert set(containers(stack)) == {f"{p}-db-1"}
    assert stack.pc("start").returncode == 0
    assert set(containers(stack)) == {f"{p}-db-1"}

    stack.pc("up", "-d")
    assert containers(stack)[f"{p}-web-1"]["State"] == "running"
    assert pid_of(stack, f"{p}-db-1") == db


def test_rm_stop_force_volumes_stops_gracefully_and_takes_anonymous_volumes(stack, agent):
    p = stack.project
    stack.write("""\
services:
  app:
    image: busybox
    stop_signal: SIGUSR1
    # As PID 1 it ends only by its trap: the stop signal, not SIGKILL, stopped it.
    command:
      - sh
      - -c
      - "trap 'echo graceful > /data/how; exit 0' USR1; while :; do sleep 0.1; done"
    volumes: [data:/data, /cache]
volumes:
  data:
""")
    stack.pc("up", "-d")
    anonymous = [v for v in stack.pc("volume", "ls", "-q").stdout.split()
                 if v.startswith(f"{p}-app-1_anon_")]
    assert len(anonymous) == 1
    done = stack.pc("rm", "-s", "-f", "-v")
    assert done.stdout == f"Going to remove {p}-app-1\n"
    assert done.stderr.splitlines() == [
        f"Container {p}-app-1  Stopping", f"Container {p}-app-1  Stopped",
        f"Container {p}-app-1  Removing", f"Container {p}-app-1  Removed"], done.stderr
    assert containers(stack) == {}
    volumes = stack.pc("volume", "ls", "-q").stdout.split()
    assert anonymous[0] not in volumes and f"{p}_data" in volumes
    assert (stack.root / "volumes" / f"{p}_data" / "_data" / "how").read_text() == "graceful\n"


def test_wait_prints_the_exit_code_and_exits_with_it(stack, agent):
    p = stack.project
    stack.write("""\
services:
  job:
    image: busybox
    command: ["sh", "-c", "sleep 4; exit 3"]
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
""")
    stack.pc("up", "-d")
    done = stack.pc("wait", "job", check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout == f'container "{p}-job-1" exited with status code 3\n'
    assert containers(stack)[f"{p}-web-1"]["State"] == "running"
    nothing = stack.pc("wait", "job", check=False)
    assert nothing.returncode == 1 and f'no containers for project "{p}"' in nothing.stderr
    assert stack.pc("wait", "nope", check=False).stderr.strip().endswith("no such service: nope")


def test_scale_up_and_down_leaves_the_other_services_alone(stack, agent):
    p = stack.project
    stack.write(TWO)
    stack.pc("up", "-d")
    db = pid_of(stack, f"{p}-db-1")
    web = pid_of(stack, f"{p}-web-1")
    up = stack.pc("scale", "web=3")
    for n in (2, 3):
        assert f"Container {p}-web-{n}  Started" in up.stderr.splitlines(), up.stderr
    assert {n: c["State"] for n, c in containers(stack).items()} == {
        f"{p}-web-{n}": "running" for n in (1, 2, 3)} | {f"{p}-db-1": "running"}
    assert (pid_of(stack, f"{p}-db-1"), pid_of(stack, f"{p}-web-1")) == (db, web)
    after_two_passes(stack)  # the agent keeps the scale it was given
    assert len(containers(stack)) == 4

    down = stack.pc("scale", "web=1")
    for n in (2, 3):
        assert f"Container {p}-web-{n}  Removed" in down.stderr.splitlines(), down.stderr
    after_two_passes(stack)
    assert set(containers(stack)) == {f"{p}-web-1", f"{p}-db-1"}
    assert (pid_of(stack, f"{p}-db-1"), pid_of(stack, f"{p}-web-1")) == (db, web)
    bad = stack.pc("scale", "web", check=False)
    assert bad.returncode == 1 and "invalid scale specifier: web" in bad.stderr


def _line(process: subprocess.Popen, timeout: float = 30.0) -> str:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(process.stdout.readline).result(timeout)


TICKER = """\
services:
  ticker:
    image: busybox
    command:
      - sh
      - -c
      - "trap 'exit 7' TERM; i=0; while :; do i=$$((i+1)); echo tick $$i; sleep 1; done"
"""


def test_attach_shows_the_output_and_proxies_signals(stack, agent):
    p = stack.project
    stack.write(TICKER)
    stack.pc("up", "-d")
    # Without the signal proxy, an interrupt ends the attachment only.
    watcher = stack.start("attach", "--no-stdin", "--sig-proxy=false", "ticker")
    try:
        assert _line(watcher).startswith("tick ")
        assert _line(watcher).startswith("tick ")
        os.kill(watcher.pid, signal.SIGINT)
        assert watcher.wait(timeout=30) == 130
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert containers(stack)[f"{p}-ticker-1"]["State"] == "running"

    # With it (docker's default), the container gets the signal and attach its exit code.
    watcher = stack.start("attach", "--no-stdin", "ticker")
    try:
        assert _line(watcher).startswith("tick ")
        os.kill(watcher.pid, signal.SIGTERM)
        assert watcher.wait(timeout=30) == 7
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert containers(stack)[f"{p}-ticker-1"]["State"] == "exited"
    missing = stack.pc("attach", "ticker", check=False)
    assert missing.returncode == 1 and 'service "ticker" is not running' in missing.stderr


def test_volumes_lists_the_project_s_named_volumes(stack, agent):
    p = stack.project
    stack.write("""\
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    volumes: [data:/data, /scratch]
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    volumes: [cache:/cache]
volumes:
  data:
  cache:
""")
    stack.pc("up", "-d")
    table = stack.pc("volumes").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split() for line in table[1:]) == [
        ["local", f"{p}_cache"], ["local", f"{p}_data"]]
    assert stack.pc("volumes", "-q", "web").stdout == f"{p}_data\n"
    rows = [json.loads(line) for line in stack.pc("volumes", "--format", "json", "db").stdout
            .splitlines()]
    assert [(r["Name"], r["Driver"], r["Scope"]) for r in rows] == [(f"{p}_cache", "local",
                                                                      "local")]
    assert stack.pc("volumes", "nope", check=False).returncode == 1


def test_attach_to_a_terminal_types_into_it_and_the_detach_keys_leave_it_running(stack, agent):
    from tests.e2e.test_run_interactive import Terminal

    p = stack.project
    stack.write("""\
services:
  shell:
    image: busybox
    stop_signal: SIGKILL
    tty: true
    stdin_open: true
    command: ["sh"]
""")
    stack.pc("up", "-d")
    term = Terminal(stack, "attach", "shell")
    try:
        term.type(b"echo hi-$((40+2))\r")
        term.expect(b"hi-42")
        term.type(b"\x10\x11")  # docker's ctrl-p ctrl-q
        assert term.wait() == 0
    finally:
        term.close()
    assert containers(stack)[f"{p}-shell-1"]["State"] == "running"
    # The shell kept its input: a second attachment types into it again.
    term = Terminal(stack, "attach", "--detach-keys", "ctrl-x", "shell")
    try:
        term.type(b"echo again-$((1+1))\r")
        term.expect(b"again-2")
        term.type(b"exit 5\r")
        assert term.wait() == 5
    finally:
        term.close()
