"""Compose features end to end through `pcompose up`: what a user of the stack would check."""

from __future__ import annotations

import datetime as dt
import json


def rows(stack) -> dict[str, dict]:
    done = stack.pc("ps", "-a", "--format", "json")
    return {r["Name"]: r for r in map(json.loads, filter(str.strip, done.stdout.splitlines()))}


def sh(stack, service: str, script: str) -> str:
    return stack.pc("exec", "-T", service, "sh", "-c", script).stdout


def test_secrets_and_configs_are_mounted_read_only_at_their_targets(stack):
    (stack.dir / "token.txt").write_text("s3cret\n")
    stack.write("""
services:
  app:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    secrets: [token]
    configs:
      - source: motd
        target: /etc/motd
secrets:
  token:
    file: ./token.txt
configs:
  motd:
    content: "welcome"
""")
    stack.pc("up", "-d")
    assert sh(stack, "app", "cat /run/secrets/token") == "s3cret\n"
    assert sh(stack, "app", "cat /etc/motd") == "welcome"
    # Root inside the container writes each (a writable file would take it): refused.
    for path in ("/run/secrets/token", "/etc/motd"):
        denied = stack.pc("exec", "-T", "app", "sh", "-c", f"echo x > {path}", check=False)
        assert denied.returncode != 0 and "Read-only" in denied.stderr + denied.stdout, path
    assert sh(stack, "app", "cat /run/secrets/token") == "s3cret\n"
    assert sh(stack, "app", "cat /etc/motd") == "welcome"
    assert (stack.dir / "token.txt").read_text() == "s3cret\n"
    # The control: the same write to a path of the container's own root succeeds.
    assert sh(stack, "app", "echo x > /tmp/probe && cat /tmp/probe") == "x\n"


def test_a_dependant_starts_only_once_its_dependency_is_healthy(stack):
    stack.write("""
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 100000"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 30
  api:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    depends_on:
      db:
        condition: service_healthy
""")
    stack.pc("up", "-d")
    found = rows(stack)
    db, api = found[f"{stack.project}-db-1"], found[f"{stack.project}-api-1"]
    assert db["Health"] == "healthy" and api["State"] == "running"
    # The times the runtime recorded: api started after db's first passing check ended, and
    # after every failing one (db is not ready for its first two seconds).
    [db_state] = [c["State"] for c in json.loads(stack.pc("inspect", db["Name"]).stdout)]
    [api_state] = [c["State"] for c in json.loads(stack.pc("inspect", api["Name"]).stdout)]
    api_started = dt.datetime.fromisoformat(api_state["StartedAt"])
    checks = [(dt.datetime.fromisoformat(c["End"]), c["ExitCode"])
              for c in db_state["Health"]["Log"]]
    assert [code for _, code in checks if code == 0], checks
    assert 1 in [code for _, code in checks], checks  # it was found not ready first
    assert all(end <= api_started for end, code in checks if code != 0), (checks, api_started)
    assert min(end for end, code in checks if code == 0) <= api_started
    assert dt.datetime.fromisoformat(db_state["StartedAt"]) < api_started


def test_named_volume_data_survives_a_recreate_and_down_v_removes_it(stack):
    body = """
services:
  app:
    image: busybox
    command: ["sh", "-c", "{cmd}; exec sleep 100000"]
    stop_signal: SIGKILL
    volumes: [data:/data]
volumes:
  data: {{}}
"""
    stack.write(body.format(cmd="echo first >> /data/log"))
    stack.pc("up", "-d")
    stack.write(body.format(cmd="echo second >> /data/log"))
    assert f"Container {stack.project}-app-1  Recreated" in stack.pc("up", "-d").stderr
    assert sh(stack, "app", "cat /data/log") == "first\nsecond\n"
    stack.pc("down", "-v")
    assert not (stack.root / "volumes" / f"{stack.project}_data").exists()


def test_services_reach_each_other_by_name_only_over_shared_networks(stack):
    stack.write("""
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /srv; echo hello > /srv/index.html; exec httpd -f -p 80 -h /srv"]
    networks: [front]
  client:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    networks: [front]
  outsider:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    networks: [back]
networks:
  front: {}
  back: {}
""")
    stack.pc("up", "-d")
    [web] = json.loads(stack.pc("inspect", f"{stack.project}-web-1").stdout)
    web_ip = web["NetworkSettings"]["Networks"][f"{stack.project}_front"]["IPAddress"]
    lookup = "nslookup web | awk '/^Address/ {a=$2} END {print a}'"
    # The positive control: over the shared network the name is web's address, which answers.
    assert sh(stack, "client", lookup).strip() == web_ip
    assert sh(stack, "client", "timeout 5 wget -q -O - http://web/") == "hello\n"
    assert sh(stack, "client", f"timeout 5 wget -q -O - http://{web_ip}/") == "hello\n"
    # The outsider: the same lookup finds no address, and the address does not answer.
    unknown = stack.pc("exec", "-T", "outsider", "nslookup", "web", check=False)
    assert unknown.returncode != 0 and web_ip not in unknown.stdout, unknown.stdout
    assert "NXDOMAIN" in unknown.stdout + unknown.stderr, unknown.stdout + unknown.stderr
    refused = stack.pc("exec", "-T", "outsider", "sh", "-c",
                       f"timeout 3 wget -q -O - http://{web_ip}/", check=False)
    assert refused.returncode != 0 and "hello" not in refused.stdout


def test_stdin_open_keeps_a_shell_service_waiting_for_input(stack):
    stack.write("""
services:
  shell:
    image: busybox
    command: ["sh"]
    stdin_open: true
    stop_signal: SIGKILL
  closed:
    image: busybox
    command: ["sh"]
""")
    done = stack.pc("up", "-d", "--wait", check=False)
    found = rows(stack)
    assert found[f"{stack.project}-shell-1"]["State"] == "running", done.stderr
    # Without stdin_open the shell reads the end of its input at once, as with docker.
    assert found[f"{stack.project}-closed-1"]["State"] == "exited"
    assert "stdin_open" not in done.stderr  # applied now: no "not applied" warning


def test_up_after_down_runs_the_stack_as_it_is_now(stack):
    """A project's generations start again after `down`: nothing of the old stack is reused."""
    app = """
services:
  app:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    environment:
      COLOUR: {colour}
"""
    stack.write(app.format(colour="red"))
    stack.pc("up", "-d")
    assert sh(stack, "app", "echo $COLOUR") == "red\n"
    stack.pc("down")
    stack.write(app.format(colour="blue"))
    stack.pc("up", "-d")
    assert sh(stack, "app", "echo $COLOUR") == "blue\n"


def test_kill_remove_orphans_kills_the_stack_and_removes_what_it_no_longer_has(stack):
    service = """
  {name}:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""
    stack.write("services:" + service.format(name="web") + service.format(name="old"))
    stack.pc("up", "-d")
    stack.write("services:" + service.format(name="web"))
    done = stack.pc("kill", "--remove-orphans")
    assert f"Container {stack.project}-old-1  Removed" in done.stderr
    assert f"Container {stack.project}-web-1  Killed" in done.stderr
    found = rows(stack)
    assert f"{stack.project}-old-1" not in found
    assert found[f"{stack.project}-web-1"]["State"] == "exited"
