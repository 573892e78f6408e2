"""observe.from_state: runc's status is a moment old by the time conmon is looked at."""

from __future__ import annotations

from pathlib import Path

from runtime import labels
from runtime.oci import layout, observe

STATE = {"id": "c" * 64, "status": "running", "pid": 4242,
         "annotations": {labels.OWN_PROJECT: "p", labels.OWN_SERVICE: "web", labels.OWN_NAME: "p-web-1"}}


def test_a_conmon_gone_without_an_exit_is_a_lost_monitor(tmp_path: Path):
    lay = layout.Layout(root=tmp_path / "root", run_dir=tmp_path / "run")
    seen = observe.from_state(lay, STATE)
    assert seen is not None
    assert (seen.status, seen.pid, seen.exit, seen.monitored) == ("running", 4242, None, False)


def test_a_conmon_gone_after_writing_the_exit_is_an_exit_not_a_lost_monitor(tmp_path: Path):
    # Seen during a stop: runc listed the container running, then its process ended and
    # conmon wrote the exit code and left before its pidfile was read.
    lay = layout.Layout(root=tmp_path / "root", run_dir=tmp_path / "run")
    lay.exit_dir.mkdir(parents=True)
    lay.exit_file(STATE["id"]).write_text("143")
    seen = observe.from_state(lay, STATE)
    assert seen is not None
    assert (seen.status, seen.pid, seen.monitored, seen.monitor_pid) == ("exited", 0, True, None)
    assert seen.exit is not None and seen.exit.code == 143
