"""A container that goes (`down`, a scale down, a recreate after a change) is stopped as docker
compose stops it: its stop signal, SIGKILL only after its grace period (or `-t`), so that a
process that cleans up on SIGTERM gets to."""

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


def marker(stack, name: str) -> str | None:
    path = stack.dir / "out" / name
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
    stack.pc("down")
    assert marker(stack, f"{p}-db-1") == "clean"
    assert marker(stack, f"{p}-usr1-1") == "usr1"
    ended = stops(stack)
    assert ended[f"{p}-db-1"] == [0] and ended[f"{p}-usr1-1"] == [0]
    assert ended[f"{p}-stubborn-1"] == [137]
    assert stack.pc("ps", "-a", "-q").stdout.strip() == ""


def test_down_with_timeout_zero_kills_at_once(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d")
    stack.pc("down", "-t", "0")
    assert stops(stack)[f"{p}-db-1"] == [137]
    assert marker(stack, f"{p}-db-1") is None


def test_a_changed_service_is_stopped_gracefully_before_it_is_recreated(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d")
    stack.write("services:\n" + service("db", TRAPS_TERM.replace("0.2", "0.3"),
                                        stop_grace_period="5s"))
    done = stack.pc("up", "-d")
    assert f"Container {p}-db-1  Recreated" in done.stderr
    assert marker(stack, f"{p}-db-1") == "clean"
    assert stops(stack)[f"{p}-db-1"] == [0]
    # `up -t` is the grace period of what that `up` recreates.
    (stack.dir / "out" / f"{p}-db-1").unlink()
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    stack.pc("up", "-d", "-t", "0")
    assert stops(stack)[f"{p}-db-1"] == [0, 137]
    assert marker(stack, f"{p}-db-1") is None


def test_scaling_down_stops_the_replica_gracefully(stack):
    stack.write("services:\n" + service("db", stop_grace_period="5s"))
    p = stack.project
    stack.pc("up", "-d", "--scale", "db=2")
    stack.pc("up", "-d", "--scale", "db=1")
    assert marker(stack, f"{p}-db-2") == "clean"
    assert marker(stack, f"{p}-db-1") is None
    assert stops(stack) == {f"{p}-db-2": [0]}
    assert stack.pc("ps", "-q").stdout.split() == [f"{p}-db-1"]
