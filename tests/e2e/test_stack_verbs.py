"""A two-service stack through the CLI as a user drives it: up -d, ps, logs, exec, run, stop and
start, a bad file, down -v. One stack serves the tests that only look at it."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid

import pytest

from tests.e2e import conftest
from tests.support.waiting import wait_for

STACK = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL  # sleep as PID 1 ignores SIGTERM: no grace period to wait out
    command: ["sh", "-c", "echo hello from web; echo oops >&2; exec sleep 1000"]
    environment:
      GREETING: hi
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  worker:
    image: busybox
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo worker ready; echo served > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
    ports:
      - "8080:80"
    volumes:
      - data:/data
volumes:
  data:
"""

DOCKER_PS_KEYS = ["Command", "CreatedAt", "ExitCode", "Health", "ID", "Image", "Labels",
                  "LocalVolumes", "Mounts", "Name", "Names", "Networks", "Ports", "Project",
                  "Publishers", "RunningFor", "Service", "Size", "State", "Status"]


@pytest.fixture(scope="module")
def up_stack(busybox_archive):
    """The stack, up -d once for the tests of this module; down -v and the agent's end after."""
    made = conftest.make_stack(busybox_archive, "t" + uuid.uuid4().hex[:7])
    try:
        made.write(STACK)
        made.up = made.pc("up", "-d", "--wait")
        yield made
    finally:
        conftest.remove_stack(made)


def test_up_prints_a_line_per_container_and_ps_shows_both_running(up_stack):
    p = up_stack.project
    progress = up_stack.up.stderr.splitlines()
    for line in (f"Network {p}_default  Created", f"Volume {p}_data  Created",
                 f"Container {p}-web-1  Started", f"Container {p}-worker-1  Started",
                 f"Container {p}-web-1  Healthy", f"Container {p}-worker-1  Running"):
        assert line in progress, up_stack.up.stderr
    table = up_stack.pc("ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS",
                                "PORTS"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {f"{p}-web-1", f"{p}-worker-1"}
    assert all(" Up " in row for row in rows.values())
    assert "(healthy)" in rows[f"{p}-web-1"]
    assert '"sh -c echo hello fr…"' in rows[f"{p}-web-1"]


def test_ps_json_lines_carry_docker_keys(up_stack):
    p = up_stack.project
    lines = up_stack.pc("ps", "--format", "json").stdout.splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["Name"] for o in objs] == [f"{p}-web-1", f"{p}-worker-1"]
    for obj in objs:
        assert list(obj) == DOCKER_PS_KEYS
        assert obj["State"] == "running" and obj["Project"] == p
        assert obj["Status"].startswith("Up ") and obj["ExitCode"] == 0
    assert [o["Service"] for o in objs] == ["web", "worker"]
    assert [o["Health"] for o in objs] == ["healthy", ""]
    assert objs[1]["Publishers"] == [{"URL": "0.0.0.0", "TargetPort": 80, "PublishedPort": 8080,
                                      "Protocol": "tcp"}]
    assert up_stack.pc("ps", "--services").stdout == "web\nworker\n"
    assert up_stack.pc("ps", "-q", "worker").stdout == f"{objs[1]['ID']}\n"  # docker's ID


def test_logs_show_what_the_containers_printed(up_stack):
    p = up_stack.project

    def logs_once_both_printed() -> str:
        text = up_stack.pc("logs").stdout
        return text if "worker ready" in text and "hello from web" in text else ""

    out = wait_for(logs_once_both_printed)
    assert "web-1     | hello from web" in out.splitlines()  # no project, as docker writes
    assert "worker-1  | worker ready" in out.splitlines()
    web = up_stack.pc("logs", "--no-log-prefix", "web")
    assert web.stdout == "hello from web\n"
    assert web.stderr.endswith("oops\n")  # stderr of the container stays stderr
    assert up_stack.pc("logs", "--tail", "0", "web").stdout == ""


def test_exec_returns_output_and_exit_code(up_stack):
    done = up_stack.pc("exec", "-T", "web", "sh", "-c", "echo $GREETING from $(hostname); exit 3",
                       check=False)
    assert done.returncode == 3
    assert done.stdout.startswith("hi from ")
    who = up_stack.pc("exec", "-T", "-u", "nobody", "-w", "/tmp", "-e", "X=1", "web",
                      "sh", "-c", "echo $(id -un) $(pwd) $X")
    assert who.stdout == "nobody /tmp 1\n"
    piped = up_stack.pc("exec", "-T", "web", "sh", "-c", "tr a-z A-Z", input="piped in\n")
    assert piped.stdout == "PIPED IN\n"
    missing = up_stack.pc("exec", "-T", "nosuch", "true", check=False)
    assert missing.returncode == 1 and "no such service: nosuch" in missing.stderr


def test_run_rm_prints_and_leaves_no_container(up_stack):
    done = up_stack.pc("run", "--rm", "-T", "-e", "EXTRA=yes", "--entrypoint", "sh -c",
                       "web", "echo one-off $GREETING $EXTRA; exit 4", check=False)
    assert done.returncode == 4
    assert done.stdout == "one-off hi yes\n"
    names = [json.loads(line)["Name"]
             for line in up_stack.pc("ps", "-a", "--format", "json").stdout.splitlines()]
    assert names == [f"{up_stack.project}-web-1", f"{up_stack.project}-worker-1"]


def test_stop_then_start(up_stack):
    p = up_stack.project
    stopped = up_stack.pc("stop", "worker")
    assert f"Container {p}-worker-1  Stopped" in stopped.stderr
    assert up_stack.pc("ps", "--services").stdout == "web\n"
    state = json.loads(up_stack.pc("ps", "-a", "--format", "json", "worker").stdout)
    assert state["State"] == "exited"
    assert up_stack.pc("ps", "--filter", "status=exited", "-q").stdout == f"{state['ID']}\n"
    started = up_stack.pc("start", "worker")
    assert f"Container {p}-worker-1  Started" in started.stderr
    assert up_stack.pc("ps", "--services").stdout == "web\nworker\n"


def test_port_names_the_published_port_and_it_answers(up_stack):
    assert up_stack.pc("port", "worker", "80").stdout == "0.0.0.0:8080\n"
    missing = up_stack.pc("port", "worker", "81", check=False)
    assert missing.returncode == 1 and "no port 81/tcp" in missing.stderr
    fetched = subprocess.run(["ip", "netns", "exec", up_stack.host_netns, "busybox", "wget",
                              "-qO-", "http://127.0.0.1:8080/"], capture_output=True, text=True,
                             timeout=20)
    assert fetched.stdout == "served\n"


def worker_state(stack) -> dict:
    return json.loads(stack.pc("ps", "-a", "--format", "json", "worker").stdout)


def test_pause_unpause_kill_restart(up_stack):
    p = up_stack.project
    assert "Paused" in up_stack.pc("pause", "worker").stderr
    state = worker_state(up_stack)
    assert state["State"] == "paused" and state["Status"].endswith("(Paused)")
    assert f"Container {p}-worker-1  Unpaused" in up_stack.pc("unpause", "worker").stderr
    assert worker_state(up_stack)["State"] == "running"
    assert f"Container {p}-worker-1  Killed" in up_stack.pc("kill", "worker").stderr
    state = wait_for(lambda: (s := worker_state(up_stack))["State"] == "exited" and s)
    assert state["ExitCode"] == 137 and state["Status"].startswith("Exited (137)")
    assert f"Container {p}-worker-1  Started" in up_stack.pc("restart", "worker").stderr
    assert worker_state(up_stack)["State"] == "running"


def test_top_stats_ls(up_stack):
    top = up_stack.pc("top", "web").stdout.splitlines()
    assert top[0] == f"{up_stack.project}-web-1"
    assert top[1].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert top[2].split()[0] == "root" and top[2].endswith("sleep 1000")
    stats = [json.loads(line) for line in
             up_stack.pc("stats", "--no-stream", "--format", "json").stdout.splitlines()]
    assert [s["Name"] for s in stats] == [f"{up_stack.project}-web-1",
                                          f"{up_stack.project}-worker-1"]
    assert all(s["PIDs"] == "1" and s["MemUsage"].endswith("iB") for s in stats)
    listed = json.loads(up_stack.pc("ls", "--format", "json").stdout)
    assert {"Name": up_stack.project, "Status": "running(2)",
            "ConfigFiles": str(up_stack.dir / "compose.yaml")} in listed


def test_exec_it_runs_on_a_terminal(up_stack):
    pid, fd = pty.fork()
    if pid == 0:  # the child: pcompose on a terminal, as a user types it
        try:
            os.chdir(up_stack.dir)
            os.execve(sys.executable, up_stack.argv("exec", "-it", "web", "sh", "-c",
                                                    "tty; exit 5"), up_stack.env())
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:  # EIO: the child is gone
            break
        if not data:
            break
        out += data
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 5
    assert b"/dev/pts/" in out


def test_events_stream_the_containers_events_as_docker_compose_does(up_stack):
    p = up_stack.project
    proc = up_stack.start("events", "--json", "worker")
    try:
        assert proc.stderr.readline().startswith("Listening for events")
        up_stack.pc("stop", "worker")
        up_stack.pc("up", "-d")
        seen = []
        while not seen or seen[-1]["action"] != "start":
            seen.append(json.loads(proc.stdout.readline()))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    died, started = seen[0], seen[-1]
    assert died["action"] == "die" and died["id"] == worker_state(up_stack)["ID"]
    assert died["attributes"]["name"] == f"{p}-worker-1"
    assert died["attributes"]["exitCode"] == "137" and died["service"] == "worker"
    assert started["type"] == "container" and started["service"] == "worker"
    assert started["attributes"] == {"image": "busybox", "name": f"{p}-worker-1",
                                     "service": "worker"}
    assert all(event["service"] == "worker" for event in seen)


def test_a_repeated_up_changes_nothing_but_starts_what_was_stopped(up_stack):
    p = up_stack.project
    again = up_stack.pc("up", "-d")
    assert again.stderr.splitlines() == [f"Container {p}-web-1  Running",
                                         f"Container {p}-worker-1  Running"]
    up_stack.pc("stop", "worker")
    again = up_stack.pc("up", "-d")
    assert again.stderr.splitlines() == [f"Container {p}-worker-1  Starting",
                                         f"Container {p}-worker-1  Started",
                                         f"Container {p}-web-1  Running"]
    assert worker_state(up_stack)["State"] == "running"


def test_a_bad_stack_file_fails_with_its_place_and_submits_nothing(up_stack):
    before = up_stack.agent_call("GET", f"/v1/projects/{up_stack.project}")[1]["generation"]
    up_stack.write(STACK.replace('      GREETING: hi', '      GREETING: hi\n    ports: ["x:80"]'),
                   "broken.yaml")
    done = up_stack.pc("-f", "broken.yaml", "-p", up_stack.project, "up", "-d", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"pcompose: error: {up_stack.dir}/broken.yaml:8:13: ")
    assert "services.web.ports[0]" in done.stderr
    after = up_stack.agent_call("GET", f"/v1/projects/{up_stack.project}")[1]["generation"]
    assert after == before


def test_down_v_leaves_nothing(stack):
    stack.write(STACK)
    up = stack.pc("up", "-d")
    assert f"Container {stack.project}-web-1  Started" in up.stderr
    assert (stack.root / "volumes" / f"{stack.project}_data").exists()
    assert conftest.leftovers(stack) != []  # the check sees what a stack makes
    oneoff_id = stack.pc("run", "-d", "web", "echo", "detached").stdout.strip()  # its ID
    [oneoff] = [json.loads(line)["Name"] for line in
                stack.pc("ps", "-a", "--format", "json").stdout.splitlines()
                if json.loads(line)["ID"] == oneoff_id]
    assert oneoff.startswith(f"{stack.project}-web-run-")
    down = stack.pc("down", "-v")
    assert f"Container {stack.project}-web-1  Removing" in down.stderr
    assert f"Container {stack.project}-web-1  Removed" in down.stderr
    assert f"Container {oneoff}  Removed" in down.stderr
    assert f"Network {stack.project}_default  Removed" in down.stderr
    assert f"Volume {stack.project}_data  Removed" in down.stderr
    assert stack.pc("ps", "-a").stdout.splitlines()[1:] == []
    assert conftest.leftovers(stack) == []


def test_run_before_up_starts_the_dependencies_and_not_the_service(stack):
    stack.write("""\
services:
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
  web:
    image: busybox
    command: ["sleep", "1000"]
    depends_on: [db]
  gone:
    image: nosuchimage:1
    pull_policy: never
""")
    done = stack.pc("run", "--rm", "web", "sh", "-c", "ping -c1 -W2 db >/dev/null && echo db ok")
    assert done.stdout == "db ok\n"
    assert f"Container {stack.project}-db-1  Started" in done.stderr
    assert stack.pc("ps", "-a", "--services").stdout == "db\n"
    missing = stack.pc("run", "--rm", "gone", "true", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("pcompose: error: image nosuchimage:1: ")
    assert "Traceback" not in missing.stderr


def test_up_and_down_neither_load_the_stack_nor_import_the_heavy_libraries(up_stack):
    """The agent loads the stack: a repeated `up -d` costs the CLI its start-up only."""
    probe = ("import runpy, sys\n"
             "sys.argv = ['pcompose', *sys.argv[1:]]\n"
             "try:\n"
             "    runpy.run_module('reconciler.cli', run_name='__main__')\n"
             "except SystemExit as done:\n"
             "    heavy = sorted({m.split('.')[0] for m in sys.modules} & {\n"
             "        'pydantic', 'yaml', 'aiohttp', 'structlog', 'rich', 'pyroute2'})\n"
             "    print('imported:', heavy, 'exit:', done.code, file=sys.stderr)\n")
    argv = up_stack.argv("up", "-d")
    done = subprocess.run([argv[0], "-c", probe, *argv[3:]], cwd=up_stack.dir,
                          capture_output=True, text=True, env=up_stack.env(), timeout=120)
    assert done.stderr.splitlines()[-1] == "imported: [] exit: 0", done.stderr
    assert f"Container {up_stack.project}-web-1  Running" in done.stderr
