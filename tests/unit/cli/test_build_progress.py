"""How `build` shows the agent's progress: every line plain, a RUN's output on one redrawn line on a tty."""

from __future__ import annotations

import io
import json

import pytest

from reconciler.cli import build

LINES = ["#1 [web 1/2] FROM busybox", "#2 [web 2/2] RUN make", "#2 0.101 compiling", "#2 0.202 linking",
         "#2 DONE 0.3s"]


def _shown(mode: str, terminal: bool, monkeypatch) -> str:
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    shown = build.Lines(mode, terminal)
    for line in LINES:
        shown.line(line)
    shown.close()
    return out.getvalue()


def test_plain_shows_every_line(monkeypatch):
    assert _shown("plain", True, monkeypatch) == "\n".join(LINES) + "\n"
    assert _shown("auto", False, monkeypatch) == "\n".join(LINES) + "\n"


def test_tty_redraws_a_runs_output_on_one_line(monkeypatch):
    text = _shown("auto", True, monkeypatch)
    assert text == ("#1 [web 1/2] FROM busybox\n#2 [web 2/2] RUN make\n"
                    "\r\x1b[K#2 0.101 compiling\r\x1b[K#2 0.202 linking\r\x1b[K#2 DONE 0.3s\n")


@pytest.mark.parametrize("mode", ["quiet", "json"])
def test_quiet_and_json(mode, monkeypatch):
    text = _shown(mode, True, monkeypatch)
    if mode == "quiet":
        assert text == ""
    else:
        assert [json.loads(line)["text"] for line in text.splitlines()] == LINES


def test_build_args_take_a_bare_name_from_the_environment(monkeypatch):
    monkeypatch.setenv("FROM_SHELL", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert build._build_args(["A=1", "FROM_SHELL", "NOT_SET", "B="]) == ["A=1", "FROM_SHELL=yes", "B="]
