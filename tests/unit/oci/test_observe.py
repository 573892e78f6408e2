"""observe.from_state: runc's status is a moment old by the time conmon is looked at."""

from __future__ import annotations

import os
from pathlib import Path

from runtime import labels
from runtime.oci import layout, observe

MADE = 1_700_000_000  # when runc made the instance (its state's `created`)
STATE = {"id": "c" * 64, "status": "running", "pid": 4242, "created": "2023-11-14T22:13:20Z",
         "annotations": {labels.OWN_PROJECT: "p", labels.OWN_SERVICE: "web", labels.OWN_NAME: "p-web-1"}}


def _layout(tmp_path: Path, exit_written_at: float | None = None) -> layout.Layout:
    lay = layout.Layout(root=tmp_path / "root", run_dir=tmp_path / "run")
    if exit_written_at is not None:
        lay.exit_dir.mkdir(parents=True)
        lay.exit_file(STATE["id"]).write_text("143")
        os.utime(lay.exit_file(STATE["id"]), (exit_written_at, exit_written_at))
    return lay


def test_a_conmon_gone_without_an_exit_is_a_lost_monitor(tmp_path: Path):
    seen = observe.from_state(_layout(tmp_path), STATE)
    assert seen is not None
    assert (seen.status, seen.pid, seen.exit, seen.monitored) == ("running", 4242, None, False)


def test_a_conmon_gone_after_writing_the_exit_is_an_exit_not_a_lost_monitor(tmp_path: Path):
    # Seen during a stop: runc listed the container running, then its process ended and
    # conmon wrote the exit code and left before its pidfile was read.
    seen = observe.from_state(_layout(tmp_path, exit_written_at=MADE + 5), STATE)
    assert seen is not None
    assert (seen.status, seen.pid, seen.monitored, seen.monitor_pid) == ("exited", 0, True, None)
    assert seen.exit is not None and seen.exit.code == 143


def test_an_exit_from_before_runc_made_the_instance_is_not_its_exit(tmp_path: Path):
    seen = observe.from_state(_layout(tmp_path, exit_written_at=MADE - 5), STATE)
    assert seen is not None
    assert (seen.status, seen.exit, seen.monitored) == ("running", None, False)
