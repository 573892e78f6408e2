"""The embedded DNS keeps answering the other containers of a network after the agent was
stopped or killed and started again, and a service was then recreated, scaled or restarted.

A recreate or scale changes the bridge's ports; a bridge whose MAC followed its lowest port's
changed the gateway's MAC under the client's ARP cache, and its queries went unanswered (with
or without an agent restart, whenever the going veth had the lowest MAC: about one run in two;
tests/linux/net/test_bridge_mac.py checks the cause deterministically)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support import convergence
from tests.support.waiting import wait_for

COMPOSE = """
services:
  web:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    environment:
      GENERATION: "{generation}"
  client:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""


def addresses(stack, service: str) -> set[str]:
    """The default-network addresses of a service's running replicas, as inspect reports them."""
    rows = [json.loads(line) for line in stack.pc("ps", "--format", "json").stdout.splitlines()
            if line.strip()]
    names = [row["Name"] for row in rows if row["Service"] == service]
    found = set()
    for name in names:
        [info] = json.loads(stack.pc("inspect", name).stdout)
        found.add(info["NetworkSettings"]["Networks"][f"{stack.project}_default"]["IPAddress"])
    return found


def resolved(stack, name: str) -> set[str]:
    """What busybox nslookup in `client` answers for `name` (the embedded DNS is its server):
    the addresses after the server's own line, or an empty set when no answer came."""
    done = stack.pc("exec", "-T", "client", "sh", "-c",
                    f"timeout 10 nslookup {name} | awk '/^Name:/ {{n=1}} n && /^Address/ {{print $2}}'",
                    check=False)
    return {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}


def restart_agent(stack, how: str) -> None:
    """The agent ended (SIGTERM or SIGKILL by PID); the next CLI call starts another one."""
    agent = stack.agent_pid()
    assert agent is not None
    if how == "kill -9":
        convergence.kill_9(agent)
    else:
        os.kill(agent, signal.SIGTERM)
        wait_for(lambda: convergence.gone(agent), what=f"the agent {agent} to stop")
    stack.pc("up", "-d")  # starts a new agent, which adopts what runs
    assert stack.agent_pid() not in (None, agent)


# Each change once, the two kinds of agent end spread over them: the bridge's MAC, the cause
# this guards against, is checked on every port's departure by tests/linux/net/test_bridge_mac.
@pytest.mark.parametrize(("change", "how"), [("recreate", "kill -9"), ("scale", "graceful"),
                                             ("restart", "kill -9")])
def test_dns_answers_after_an_agent_restart_and_a_change(stack, how, change):
    stack.write(COMPOSE.format(generation=1))
    stack.pc("up", "-d")
    # The positive control: before anything, client resolves web to web's address.
    assert resolved(stack, "web") == addresses(stack, "web")

    restart_agent(stack, how)
    assert resolved(stack, "web") == addresses(stack, "web")

    if change == "recreate":
        stack.write(COMPOSE.format(generation=2))
        stack.pc("up", "-d")
    elif change == "scale":
        stack.pc("up", "-d", "--scale", "web=2")
    else:
        stack.pc("restart", "web")
    want = addresses(stack, "web")
    assert len(want) == (2 if change == "scale" else 1)
    # Each replica's address, from the other container, through the embedded DNS.
    # `up -d` returns once the DNS serves the new containers: no wait.
    assert resolved(stack, "web") == want
    for name in (f"{stack.project}-web-1", "client"):
        assert resolved(stack, name), f"{name} did not resolve"
    ping = stack.pc("exec", "-T", "client", "ping", "-c1", "-W", "5", "web", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
