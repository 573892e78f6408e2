"""How `build` shows the agent's progress: every line plain; on a terminal docker's collapsing block,
a running step's last lines of output under its row, gone once it is done."""

from __future__ import annotations

import io
import json
import re
import types

import pytest

from reconciler.cli import build, progress, render

LINES = ["#1 [web 1/2] FROM busybox", "#1 DONE 0.0s", "#2 [web 2/2] RUN make", "#2 0.101 compiling",
         "#2 0.202 linking", "#2 DONE 0.3s", "[Warning] One or more build-args [X] were not consumed"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _block() -> tuple[render.Progress, progress.Block, io.StringIO]:
    out = io.StringIO()
    shown = render.Progress(out, "Building")
    block = progress.Block(out, "Building", colour=False, clock=Clock())
    block._stop.set()  # no redraw thread: the test looks at the rows
    block._thread = types.SimpleNamespace(join=lambda: None)  # type: ignore[assignment]
    shown._writer = block
    return shown, block, out


def _drawn(block: progress.Block) -> list[str]:
    """The block as drawn on 80 columns, each run of spaces as one (the timer column aside)."""
    lines = progress.draw(block.rows, "Building", 0.0, 80, False)
    return [re.sub(r" +", " ", line).strip() for line in lines]


def test_plain_shows_every_line_as_it_came():
    out = io.StringIO()
    shown = render.Progress(out, "Building")
    shown._writer = progress.Lines(out)
    steps = render.BuildLines(shown)
    for line in LINES:
        steps.line(line)
    steps.close()
    assert out.getvalue() == "\n".join(LINES) + "\n"


def test_tty_shows_a_running_steps_last_output_under_it_and_collapses_it_when_done():
    shown, block, out = _block()
    steps = render.BuildLines(shown)
    for line in LINES[:5]:
        steps.line(line)
    assert _drawn(block) == [
        "[+] Building 1/2",
        "✔ #1 [web 1/2] FROM busybox Done 0.0s",
        "⠋ #2 [web 2/2] RUN make Building 0.0s",
        "=> # compiling",
        "=> # linking"]
    for line in LINES[5:]:
        steps.line(line)
    assert _drawn(block) == [
        "[+] Building 2/2",
        "✔ #1 [web 1/2] FROM busybox Done 0.0s",
        "✔ #2 [web 2/2] RUN make Done 0.0s"]
    steps.close()  # the final block, then the line of no step below it
    assert out.getvalue().endswith("\x1b[?25h" + LINES[-1] + "\n")


def test_tty_keeps_only_a_steps_last_lines_and_no_terminal_escapes():
    shown, block, _ = _block()
    steps = render.BuildLines(shown)
    steps.line("#1 [web 1/1] RUN seq 10")
    for i in range(1, 11):
        steps.line(f"#1 0.{i:03d} line {i}\x1b[31m")
    shown_lines = _drawn(block)[2:]
    assert shown_lines == [f"=> # line {i} [31m" for i in range(5, 11)]
    steps.line("#1 ERROR: process \"seq 10\" did not complete successfully: exit code: 1")
    assert _drawn(block)[2:] == ['process "seq 10" did not complete successfully: exit code: 1']
    shown.close()


@pytest.mark.parametrize("mode", ["quiet", "json"])
def test_quiet_prints_nothing_and_json_one_event_per_change(mode):
    out = io.StringIO()
    shown = render.Progress(out, "Building")
    shown._writer = progress.Quiet() if mode == "quiet" else progress.JsonLines(out)
    steps = render.BuildLines(shown)
    for line in LINES:
        steps.line(line)
    steps.close()
    if mode == "quiet":
        assert out.getvalue() == ""
    else:
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(e["id"][:2], e["state"]) for e in events] == [
            ("#1", "working"), ("#1", "done"), ("#2", "working"), ("#2", "done")]


def test_build_args_take_a_bare_name_from_the_environment(monkeypatch):
    monkeypatch.setenv("FROM_SHELL", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert build._build_args(["A=1", "FROM_SHELL", "NOT_SET", "B="]) == ["A=1", "FROM_SHELL=yes", "B="]
