"""The command line before anything runs: which verb module is imported, and flag values."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import _verb_of, common, compose_logs

REPO = Path(__file__).resolve().parents[3]


def test_the_verb_is_found_after_global_options_and_their_values():
    assert _verb_of(["-f", "a.yaml", "-p", "shop", "--profile", "x", "up", "-d"]) == "up"
    assert _verb_of(["--root=/x", "--run-dir", "/run/x", "ps", "web"]) == "ps"
    assert _verb_of(["--host-netns", "/run/netns/h", "logs"]) == "logs"
    assert _verb_of(["--help"]) is None


def test_a_stack_verb_imports_neither_the_loader_nor_the_agent_client():
    code = ("import sys; from reconciler import cli; cli.build_parser('up'); "
            "print(sorted(m for m in ('pydantic', 'aiohttp', 'reconciler.spec', "
            "'controllers.services', 'rich') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout == "[]\n"


def test_since_takes_a_time_a_timestamp_or_a_duration_ago():
    now = dt.datetime(2026, 5, 2, 12, 0, tzinfo=dt.timezone.utc)
    assert compose_logs.parse_since("42m", now) == now - dt.timedelta(minutes=42)
    assert compose_logs.parse_since("1h30m", now) == now - dt.timedelta(minutes=90)
    assert compose_logs.parse_since("2026-05-02T11:00:00Z", now) == now - dt.timedelta(hours=1)
    assert compose_logs.parse_since("1777723200", now) == dt.datetime(
        2026, 5, 2, 12, 0, tzinfo=dt.timezone.utc)
    with pytest.raises(common.UserFacingError, match="--since yesterday"):
        compose_logs.parse_since("yesterday", now)


def test_tail_is_a_number_or_all():
    assert compose_logs.parse_tail("all") is None
    assert compose_logs.parse_tail("3") == 3
    with pytest.raises(common.UserFacingError, match="--tail x"):
        compose_logs.parse_tail("x")
