"""A container that goes (`down`, a scale down, a recreate after a change) is stopped as docker
compose stops it: its stop signal, SIGKILL only after its grace period (or `-t`), so that a
process that cleans up on SIGTERM gets to. And the lines `up` prints while it waits for a
dependency: `Waiting`, then `Exited` or `Healthy`."""

from __future__ import annotations

import json

# On SIGTERM it writes a marker to the test's dir and exits 0. The handler takes a second: a
# SIGKILL sent at once (-t 0) ends it before that, with 137.
TRAPS_TERM = ('["sh", "-c", "trap \'sleep 1; echo clean > /out/$$HOSTNAME; exit 0\' TERM; '
              'while :; do sleep 0.2; done"]')


def service(name: str, command: str = TRAPS_TERM, **extra: str) -> str:
    lines = [f"  {name}:", "    image: busybox", f"    command: {command}",
             '    volumes: ["./out:/out"]']
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def stops(stack) -> dict[str, list[int | None]]:
    """Each container's stops the agent recorded, in order: how each ended."""
    out: dict[str, list[int | None]] = {}
    for line in (stack.root / "logs" / "agent.log").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "container.stopped":
            out.setdefault(entry["container"], []).append(entry.get("exit_code"))
    return out


def hostnames(stack) -> dict[str, str]:
    """name -> hostname (the short ID, docker's default) of each container: what the marker
    of a container is called."""
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout
            .splitlines() if line.strip()]
    return {row["Name"]: row["ID"][:12] for row in rows}


def marker(stack, hostname: str) -> str | None:
    path = stack.dir / "out" / hostname
    return path.read_text().strip() if path.exists() else None


def test_down_stops_each_container_with_its_stop_signal_and_grace_period(stack):
    usr1 = ('["sh", "-c", "trap \'echo usr1 > /out/$$HOSTNAME; exit 0\' USR1; '
            'while :; do sleep 0.2; done"]')
    stack.write("services:\n" + service("db", stop_grace_period="5s")
                + service("usr1", usr1, stop_signal="SIGUSR1", stop_grace_period="5s")
                # busybox sleep as PID 1 ignores SIGTERM: only the SIGKILL ends it.
                + service("stubborn", '["sleep", "100000"]', stop_grace_period="2s"))
    p = stack.project
    stack.pc("up", "-d")
    host = hostnames(stack)
    stack.pc("down")
    assert marker(stack, host[f"{p}-db-1"]) == "clean"
    assert marker(stack, host[f"{p}-usr1-1"]) == "usr1"
    ended = stops(stack)
    assert ended[f"{p}-db-1"] == [0] and ended[f"{p}-usr1-1"] == [0]
    assert ended[f"{p}-stubborn-1"] == [137]
    assert stack.pc("ps", "-a", "-q").stdout.strip() == ""


def test_down_with_timeout_zero_kills_at_once(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d")
    host = hostnames(stack)
    stack.pc("down", "-t", "0")
    assert stops(stack)[f"{p}-db-1"] == [137]
    assert marker(stack, host[f"{p}-db-1"]) is None


def test_a_changed_service_is_stopped_gracefully_before_it_is_recreated(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d")
    first = hostnames(stack)[f"{p}-db-1"]
    stack.write("services:\n" + service("db", TRAPS_TERM.replace("0.2", "0.3"),
                                        stop_grace_period="5s"))
    done = stack.pc("up", "-d")
    assert f"Container {p}-db-1  Recreated" in done.stderr
    assert marker(stack, first) == "clean"
    assert stops(stack)[f"{p}-db-1"] == [0]
    # `up -t` is the grace period of what that `up` recreates.
    second = hostnames(stack)[f"{p}-db-1"]
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    stack.pc("up", "-d", "-t", "0")
    assert stops(stack)[f"{p}-db-1"] == [0, 137]
    assert marker(stack, second) is None


def test_scaling_down_stops_the_replica_gracefully(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d", "--scale", "db=2")
    host = hostnames(stack)
    stack.pc("up", "-d", "--scale", "db=1")
    assert marker(stack, host[f"{p}-db-2"]) == "clean"
    assert marker(stack, host[f"{p}-db-1"]) is None
    assert stops(stack) == {f"{p}-db-2": [0]}
    assert [i[:12] for i in stack.pc("ps", "-q").stdout.split()] == [host[f"{p}-db-1"]]


def test_up_says_waiting_then_exited_or_healthy_for_the_dependencies_it_waits_for(stack):
    stack.write("""\
services:
  job:
    image: busybox
    command: ["true"]
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  cache:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
  app:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
    depends_on:
      job:
        condition: service_completed_successfully
      db:
        condition: service_healthy
      cache:
        condition: service_started
""")
    p = stack.project
    lines = stack.pc("up", "-d").stderr.splitlines()
    for name, end in (("job", "Exited"), ("db", "Healthy")):
        waiting, ended = f"Container {p}-{name}-1  Waiting", f"Container {p}-{name}-1  {end}"
        assert waiting in lines and ended in lines, lines
        assert lines.index(waiting) < lines.index(ended) < lines.index(
            f"Container {p}-app-1  Started"), lines
    assert f"Container {p}-job-1  Healthy" not in lines
    assert not [line for line in lines if f"{p}-cache-1" in line and "Waiting" in line]


def test_a_dependency_that_did_not_complete_is_reported_in_docker_compose_words(stack):
    stack.write("""\
services:
  job:
    image: busybox
    command: ["sh", "-c", "exit 3"]
  app:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "100000"]
    depends_on:
      job:
        condition: service_completed_successfully
""")
    p = stack.project
    done = stack.pc("up", "-d", check=False)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    failed = 'service "job" didn\'t complete successfully: exit 3'
    assert lines.index(f"Container {p}-job-1  Waiting") < lines.index(
        f"Container {p}-job-1  Error {failed}"), lines
    assert lines[-1] == f"pcompose: error: project {p}: service:job await: {failed} " \
        "(the agent keeps trying)"
    assert f"{p}-app-1" not in stack.pc("ps", "-a").stdout
