"""What a local client or a stack file sends the agent, hostile or broken: refused with a
clear message (400, 413) while the agent goes on serving; a service that can never be made is
reported once and not tried again in a loop, while the rest of its stack comes up."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess

import pytest
from tests.support.waiting import wait_for

ROUTES = [("POST", "/v1/up"), ("POST", "/v1/down"), ("POST", "/v1/ps"), ("POST", "/v1/act"),
          ("PUT", "/v1/projects/demo")]


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("agent", timeout=60)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def send(stack, method: str, path: str, body: bytes) -> tuple[int, str, dict | str]:
    """One raw request; (status, content type, the JSON answer or its text)."""
    conn = _Unix(str(stack.run_dir / "agent.sock"))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "").split(";")[0]
        return response.status, kind, json.loads(data) if kind == "application/json" \
            else data.decode(errors="replace")
    finally:
        conn.close()


def serves(stack) -> bool:
    status, answer = stack.agent_call("GET", "/v1/version")
    return status == 200 and answer["pid"] > 0


@pytest.fixture
def agent(stack):
    """The stack's agent, started as the CLI starts it (a `down` of nothing)."""
    stack.pc("-p", stack.project, "down")
    assert serves(stack)
    return stack


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_body_nested_200000_deep_is_refused_with_400(agent, method, path):
    deep = b"[" * 200_000 + b"]" * 200_000
    status, kind, answer = send(agent, method, path, deep)
    assert (status, kind) == (400, "application/json")
    assert answer["error"] == "request body: nested deeper than 100 levels"
    wrapped = b'{"load": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"
    status, kind, answer = send(agent, method, path, wrapped)
    assert (status, answer["error"]) == (400, "request body: nested deeper than 100 levels")
    assert serves(agent)


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_malformed_body_is_refused_with_400(agent, method, path):
    for body in (b"{", b"\xff\xfe", b'{"timeout": ' + b"9" * 10_000 + b"}", b"[]", b"null"):
        status, kind, answer = send(agent, method, path, body)
        assert (status, kind) == (400, "application/json"), (body[:20], answer)
        assert answer["error"].startswith("request body: "), answer
    assert serves(agent)


def test_a_huge_body_is_refused_with_413_and_the_agent_serves_on(agent):
    body = b'{"load": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    status, kind, answer = send(agent, "POST", "/v1/up", body)
    assert (status, kind) == (413, "application/json")
    assert answer["error"] == ("request body: more than 4194304 bytes, the most the agent "
                               "takes")
    assert serves(agent)
    assert agent.pc("-p", agent.project, "ps").returncode == 0


def test_a_stack_too_large_to_keep_is_refused_through_the_cli(stack):
    big = "x" * (5 * 1024 * 1024)
    stack.write(f"services:\n  app:\n    image: busybox\n    configs: [big]\n"
                f"configs:\n  big:\n    content: {big}\n")
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0
    assert "stack: " in done.stderr and "more than the 4194304 a project may keep" \
        in done.stderr, done.stderr
    assert stack.agent_call("GET", f"/v1/projects/{stack.project}")[0] == 404  # not stored
    assert serves(stack)


def agent_log(stack) -> list[str]:
    return (stack.root / "logs" / "agent.log").read_text().splitlines()


def test_a_service_that_cannot_be_made_is_reported_once_and_not_retried(stack):
    p = stack.project
    stack.write(f"""\
services:
  good:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
  flappy:
    image: busybox
    command: ["sh", "-c", "exit 1"]
    restart: always
  nobody:
    image: busybox
    command: ["sleep", "100000"]
    user: nosuchuser
  gone:
    image: nosuchimage:1
    pull_policy: never
""")
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0
    for name in ("nobody", "gone"):
        errors = [line for line in done.stderr.splitlines()
                  if line.startswith(f"Container {p}-{name}-1  Error")]
        assert len(errors) == 1, done.stderr
    status, project = stack.agent_call("GET", f"/v1/projects/{p}")
    assert status == 200 and project["status"] == "failed"
    assert "no such user" in project["reason"] and "nosuchimage" in project["reason"]
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout
            .splitlines() if line.strip()]
    assert {r["Service"]: r["State"] for r in rows}.get("good") == "running"
    # The agent is busy meanwhile: `flappy` exits and is restarted, and every exit makes the
    # project looked at again. Neither failed service is tried again: its creation leaves
    # nothing in the log, however long the wait.
    def tried() -> int:
        return sum(f"{p}-nobody-1" in line or f"{p}-gone-1" in line for line in agent_log(stack))

    def restarts() -> int:
        return sum('"container.started"' in line and f"{p}-flappy-1" in line
                   for line in agent_log(stack))

    before, restarted = tried(), restarts()
    wait_for(lambda: restarts() >= restarted + 4, what="four restarts of flappy")
    assert tried() == before
    failed = [line for line in agent_log(stack) if '"reconcile.failed"' in line
              and '"warning"' in line]
    assert len(failed) == 1, failed
    # A new `up` is a new desired state: tried again, and reported again, once.
    again = stack.pc("up", "-d", check=False)
    assert sum(line.startswith(f"Container {p}-nobody-1  Error")
               for line in again.stderr.splitlines()) == 1


def runc_pid(stack, name: str) -> int:
    state = subprocess.run(["runc", "--root", str(stack.run_dir / "runc"), "state", name],
                           capture_output=True, text=True, check=True, timeout=30)
    return json.loads(state.stdout)["pid"]


def test_a_container_name_another_project_holds_is_refused_cleanly(stack):
    p = stack.project
    stack.write("services:\n  web:\n    image: busybox\n    container_name: shared-" + p
                + '\n    command: ["sleep", "100000"]\n    stop_signal: SIGKILL\n')
    stack.pc("up", "-d")
    shared = stack.pc("ps", "-q", "web").stdout.strip()  # runc knows it by its ID
    held = runc_pid(stack, shared)
    other_dir = stack.dir.parent / "other"
    other_dir.mkdir()
    (other_dir / "compose.yaml").write_text(
        "services:\n  app:\n    image: busybox\n    container_name: shared-" + p
        + '\n    command: ["sleep", "100000"]\n  side:\n    image: busybox\n'
        '    command: ["sleep", "100000"]\n    stop_signal: SIGKILL\n')
    other = f"{p}o"
    try:
        done = stack.pc("-p", other, "up", "-d", check=False, cwd=other_dir)
        assert done.returncode != 0
        assert f'the container name "shared-{p}" is already in use by a container of ' \
               f"service web of project {p}" in done.stderr, done.stderr
        sides = [json.loads(line) for line in stack.pc("-p", other, "ps", "--format", "json",
                                                       cwd=other_dir).stdout.splitlines()]
        assert [(r["Service"], r["State"]) for r in sides] == [("side", "running")]
        assert runc_pid(stack, shared) == held  # the same container, untouched
        mounts = [line for line in open("/proc/mounts") if f"/rootfs/{shared}/" in line]
        assert len(mounts) == 1, mounts
    finally:
        stack.pc("-p", other, "down", "-v", "-t", "0", check=False, cwd=other_dir)


def test_a_container_name_that_is_another_services_name_is_refused(stack):
    """The loader refuses it; a stack stored through the API alone gets as far as the plan,
    which refuses it for good: nothing is made, nothing loops."""
    p = stack.project
    text = """\
services:
  a:
    image: busybox
    command: ["sleep", "100000"]
  b:
    image: busybox
    command: ["sleep", "100000"]
    container_name: NAME
"""
    stack.write(text.replace("NAME", f"{p}-a-1"))
    done = stack.pc("up", "-d", check=False)
    assert done.returncode != 0 and f'"{p}-a-1"' in done.stderr, done.stderr
    stack.write(text.replace("NAME", "other"))
    normalized = json.loads(stack.pc("config", "--format", "json").stdout)
    normalized["services"]["b"]["container_name"] = f"{p}-a-1"
    status, _, answer = send(stack, "PUT", f"/v1/projects/{p}",
                             json.dumps({"stack": normalized}).encode())
    assert status == 200, answer
    wait_for(lambda: stack.agent_call("GET", f"/v1/projects/{p}")[1]["status"] == "failed",
             what="the project to fail")
    reason = stack.agent_call("GET", f"/v1/projects/{p}")[1]["reason"]
    assert f'services.b.container_name: "{p}-a-1" is also the name of a container of ' \
           'service "a"' == reason
    assert stack.pc("-p", p, "ps", "-a", "--format", "json").stdout.strip() == ""
