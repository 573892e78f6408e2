"""`ps` while `up` is still at work: it answers with the containers made so far instead of
waiting for the reconcile to end."""

from __future__ import annotations

import json

from tests.support.waiting import wait_for

STACK = """\
services:
  db:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  app:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    depends_on:
      db:
        condition: service_healthy
"""


def _rows(stack) -> dict[str, dict]:
    out = stack.pc("ps", "-a", "--format", "json").stdout
    return {row["Service"]: row for row in map(json.loads, out.splitlines())}


def test_ps_answers_while_up_waits_for_a_dependency(stack):
    stack.write(STACK)
    up = stack.start("up", "-d", "--wait")
    try:
        # db runs but is not healthy, so the up holds app back; ps meanwhile shows db only.
        wait_for(lambda: _rows(stack).get("db", {}).get("State") == "running",
                 what="ps to list db running while up waits")
        rows = _rows(stack)
        assert "app" not in rows
        assert up.poll() is None  # the up is still in progress
        stack.pc("exec", "db", "touch", "/tmp/ready")
        _, err = up.communicate(timeout=120)
        assert up.returncode == 0, err
        rows = _rows(stack)
        assert rows["app"]["State"] == "running" and rows["db"]["Health"] == "healthy"
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        stack.pc("down", check=False)
