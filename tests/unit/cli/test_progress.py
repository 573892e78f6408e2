"""The progress display as text: the block's lines, the modes, the writers and the pull's
reports, with time passed in."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import io
import json

import pytest

from reconciler.cli import compose_logs, progress, render
from runtime.oci import logs as oci_logs
from tests.support import screen

# runtime.images exports its pull function under the module's name.
pull = importlib.import_module("runtime.images.pull")


def rows_of(*timed: tuple[float, progress.Event]) -> dict[str, progress.Row]:
    rows: dict[str, progress.Row] = {}
    for now, event in timed:
        rows = progress.advance(rows, event, now)
    return rows


def ev(id: str, text: str, status: str = progress.DONE, **kw) -> progress.Event:
    return progress.Event(id, text, status, **kw)


UP = rows_of(
    (0.0, ev("Network shop_default", "Creating", progress.WORKING)),
    (0.1, ev("Network shop_default", "Created")),
    (0.1, ev("Container shop-web-1", "Creating", progress.WORKING)),
    (0.4, ev("Container shop-web-1", "Started")),
    (0.2, ev("Container shop-db-1", "Starting", progress.WORKING)),
)


def test_the_block_has_a_header_with_counts_and_a_line_per_resource():
    assert progress.draw(UP, "Running", 1.0, 60, colour=False, frame=2) == [
        "[+] Running 2/3",
        " ✔ Network shop_default  Created                       0.1s",
        " ✔ Container shop-web-1  Started                       0.3s",
        " ⠹ Container shop-db-1   Starting                      0.8s",
    ]


def test_the_spinner_turns_with_the_frame_and_a_done_line_does_not():
    one, two = (progress.draw(UP, "Running", 1.0, 60, False, frame) for frame in (0, 1))
    assert one[3][1] != two[3][1] and one[3][1] in progress.SPINNER
    assert one[1] == two[1]


def test_an_error_is_red_on_a_line_of_its_own_and_marks_the_resource():
    rows = rows_of((0.0, ev("Container shop-job-1", "Error", progress.ERROR,
                            detail="exited (1)")))
    assert progress.draw(rows, "Running", 0.0, 50, colour=False) == [
        "[+] Running 0/1", " ✘ Container shop-job-1  Error               0.0s", "   exited (1)"]
    coloured = progress.draw(rows, "Running", 0.0, 50, colour=True)
    assert coloured[2] == "\x1b[31m   exited (1)\x1b[0m" and "\x1b[31m✘\x1b[0m" in coloured[1]


def test_all_done_paints_the_header_blue():
    rows = rows_of((0.0, ev("Volume shop_data", "Created")))
    assert progress.draw(rows, "Running", 0.0, 40, colour=True)[0] == \
        "\x1b[34m[+] Running 1/1\x1b[0m"


@pytest.mark.parametrize("width", [20, 30, 45, 80, 200])
def test_long_names_are_cut_and_no_line_reaches_the_last_column(width):
    long = "Container " + "a-very-long-project-name-" * 4 + "web-1"
    rows = rows_of((0.0, ev(long, "Started")), (0.0, ev("Network n", "Created")),
                   (0.0, ev("3f4ca61aafcd", "Downloading", progress.WORKING, parent="Network n",
                            current=5_000_000, total=27_000_000)))
    lines = progress.draw(rows, "Running", 12.5, width, colour=False)
    assert all(len(line) < width for line in lines), lines
    assert all(line.endswith("s") for line in lines[1:])  # the timer is never cut off
    if width < len(long) + 20:
        assert "…" in lines[1]


def test_a_download_shows_docker_s_bar_and_bytes_when_there_is_room():
    rows = rows_of((0.0, ev("Image web", "Pulling", progress.WORKING)),
                   (0.0, ev("3f4ca61aafcd", "Downloading", progress.WORKING, parent="Image web",
                            current=5_000_000, total=27_100_000)))
    wide = progress.draw(rows, "Pulling", 1.0, 120, False)
    assert wide[2].startswith("   ⠋ 3f4ca61aafcd  Downloading [=========>") and \
        "     5MB/27.1MB" in wide[2]
    assert "[" not in progress.draw(rows, "Pulling", 1.0, 62, False)[2]
    assert progress.transfer(0, 100, 80).startswith("[>") and \
        progress.transfer(100, 100, 80).endswith("=>]     100B/100B")


def test_a_row_keeps_its_place_and_start_and_its_clock_stops_when_done():
    rows = rows_of((1.0, ev("Container a", "Stopping", progress.WORKING)),
                   (2.0, ev("Container b", "Stopping", progress.WORKING)),
                   (3.5, ev("Container a", "Stopped")))
    assert list(rows) == ["Container a", "Container b"]
    lines = progress.draw(rows, "Stopping", 10.0, 50, False)
    assert lines[1].endswith(" 2.5s") and lines[2].endswith(" 8.0s")


def test_only_the_last_rows_that_fit_are_drawn_while_live():
    rows = rows_of(*[(0.0, ev(f"Container c-{i}", "Started")) for i in range(30)])
    live = progress.draw(rows, "Running", 0.0, 60, False, height=10)
    assert len(live) == 9 and live[0] == "[+] Running 30/30" and "c-29" in live[-1]
    assert len(progress.draw(rows, "Running", 0.0, 60, False)) == 31


@pytest.mark.parametrize("line, expected", [
    ("Container shop-web-1  Started", ("Container shop-web-1", "Started", progress.DONE, "")),
    ("Container shop-web-1  Recreate", ("Container shop-web-1", "Recreate", progress.WORKING, "")),
    ("Container shop-web-1  Running", ("Container shop-web-1", "Running", progress.DONE, "")),
    ("Container shop-web-1  Waiting", ("Container shop-web-1", "Waiting", progress.WORKING, "")),
    ("Container shop-db-1  Error exited (1)",
     ("Container shop-db-1", "Error", progress.ERROR, "exited (1)")),
    ("Network shop_default  Removed", ("Network shop_default", "Removed", progress.DONE, "")),
    ("Container x  Killing", ("Container x", "Killing", progress.WORKING, "")),
])
def test_the_verbs_lines_as_events(line, expected):
    e = progress.parse_line(line)
    assert (e.id, e.text, e.status, e.detail) == expected


@pytest.mark.parametrize("mode, ansi, terminal, no_color, shown, colour", [
    ("auto", "auto", True, False, "tty", True),
    ("auto", "auto", False, False, "plain", False),
    ("auto", "never", True, False, "plain", False),
    ("auto", "always", False, False, "tty", True),
    ("tty", "auto", False, False, "tty", False),
    ("auto", "auto", True, True, "tty", False),  # NO_COLOR: in place, without colours
    ("plain", "auto", True, False, "plain", True),
    ("json", "always", True, False, "json", True),
    ("quiet", "auto", True, False, "quiet", True),
])
def test_modes_as_docker_compose_chooses_them(mode, ansi, terminal, no_color, shown, colour):
    config = progress.Settings(mode, ansi, "Running", no_color)
    assert progress.mode_for(config, terminal) == shown
    assert progress.colour_for(config, terminal) == colour


def test_the_header_names_the_verb():
    progress.configure("auto", "auto", "stop")
    try:
        assert progress.settings().title == "Stopping"
        progress.configure("auto", "auto", "down")
        assert progress.settings().title == "Running"
    finally:
        progress.configure(None, None, None)


def test_plain_lines_are_the_lines_pcompose_always_wrote_once_each():
    out = io.StringIO()
    shown = render.Progress(out)
    for line in ("Network n_default  Creating", "Network n_default  Created",
                 "Network n_default  Created", "Container n-web-1  Error exited (1)"):
        shown.line(line)
    shown.event(ev("3f4ca61aafcd", "Downloading", progress.WORKING, parent="busybox",
                   current=10, total=100))
    shown.event(ev("3f4ca61aafcd", "Downloading", progress.WORKING, parent="busybox",
                   current=20, total=100))
    shown.close()
    assert out.getvalue().splitlines() == [
        "Network n_default  Creating", "Network n_default  Created",
        "Container n-web-1  Error exited (1)", "3f4ca61aafcd: Downloading"]


def test_json_is_one_object_per_event_with_docker_compose_s_keys():
    out = io.StringIO()
    writer = progress.JsonLines(out)
    writer.event(progress.parse_line("Container n-web-1  Started"))
    writer.event(progress.parse_line("Container n-db-1  Error exited (1)"))
    writer.event(ev("3f4ca61aafcd", "Downloading", progress.WORKING, parent="Image busybox",
                    current=25, total=100))
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"id": "Container n-web-1", "text": "Started", "state": "done"},
        {"id": "Container n-db-1", "text": "Error", "status": "exited (1)", "state": "error"},
        {"id": "3f4ca61aafcd", "parent_id": "Image busybox", "text": "Downloading",
         "current": 25, "total": 100, "percent": 25, "state": "working"},
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_block_redraws_in_place_and_at_most_once_a_frame():
    out, clock = io.StringIO(), Clock()
    block = progress.Block(out, "Running", colour=False, clock=clock)
    block._stop.set()  # no redraw thread: the test drives the time
    block._thread = object()  # type: ignore[assignment]
    for i in range(200):
        clock.now = i * 0.01  # 200 events in two seconds
        block.event(ev(f"Container c-{i % 5}", "Starting" if i < 195 else "Started",
                       progress.WORKING if i < 195 else progress.DONE))
    assert block.draws <= 21
    block._thread = None
    block.close()
    term = screen.Screen(80, 24)
    term.feed(out.getvalue().replace("\n", "\r\n"))
    lines = term.text()
    assert lines[0] == "[+] Running 5/5" and len(lines) == 6
    for i, line in enumerate(lines[1:]):
        assert line.startswith(f" ✔ Container c-{i}  Started  ") and line.endswith("s")
    assert term.wraps == 0


def test_pull_reports_downloads_at_most_every_tenth_of_a_second():
    seen: list[pull.Progress] = []
    clock = Clock()
    on_bytes = pull._throttled("3f4ca61aafcd", 1000, seen.append, clock)
    for i in range(100):
        clock.now = i * 0.01
        on_bytes(10)
    assert [p.status for p in seen] == ["Downloading"] * 10 + ["Verifying Checksum"]
    assert [p.current for p in seen[:3]] == [10, 110, 210] and seen[-1].current == 1000


def test_log_prefixes_keep_their_colour_in_docker_compose_s_order():
    printer = compose_logs.Printer(["p-web-1", "p-db-1"], project="p", colour=True,
                                   prefix=True, timestamps=False)
    assert printer.prefixes == {"db-1": "\x1b[36mdb-1   | \x1b[0m",
                                "web-1": "\x1b[33mweb-1  | \x1b[0m"}
    printer.add(["p-web-1", "p-db-1", "p-worker-1"])
    assert printer.prefixes["db-1"] == "\x1b[36mdb-1      | \x1b[0m"
    assert printer.prefixes["worker-1"] == "\x1b[32mworker-1  | \x1b[0m"
    assert render.COLOURS[5:] == ("36;1", "33;1", "32;1", "35;1", "34;1")


def test_timestamps_as_docker_writes_them(capsys):
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC)
    printer = compose_logs.Printer(["p-web-1"], project="p", colour=False, prefix=True,
                                   timestamps=True)
    printer.write("p-web-1", oci_logs.LogLine(time=when, stream="stdout", text="hello"))
    bare = compose_logs.Printer(["p-web-1"], project="p", colour=False, prefix=False,
                                timestamps=False)
    bare.write("p-web-1", oci_logs.LogLine(time=when, stream="stdout", text="hello"))
    assert capsys.readouterr().out.splitlines() == [
        "web-1  | 2026-01-02T03:04:05.120000000Z hello", "hello"]


BUILD = ["#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s",
         "#2 [web 1/2] FROM busybox:latest", "#2 CACHED",
         "#3 [web 2/2] RUN make", "#3 0.512 cc -o app app.c", "#3 ERROR: exit code: 2",
         "a line of no step"]


def test_a_build_s_lines_are_rows_of_a_building_block():
    out, clock = io.StringIO(), Clock()
    shown = render.Progress(out, "Building")
    shown._writer = progress.Block(out, "Building", colour=False, clock=clock)
    steps = render.BuildLines(shown)
    for line in BUILD:
        steps.line(line)
    rows = shown._writer.rows
    assert [(r.event.id, r.event.text, r.event.detail) for r in rows.values()] == [
        ("#1 [internal] load build definition from Dockerfile", "Done", ""),
        ("#2 [web 1/2] FROM busybox:latest", "Cached", ""),
        ("#3 [web 2/2] RUN make", "Error", "exit code: 2")]
    assert progress.draw(rows, "Building", 0.0, 80, False)[0] == "[+] Building 2/3"
    shown.close()


def test_a_build_off_a_terminal_is_its_plain_lines_as_they_came():
    out = io.StringIO()
    steps = render.BuildLines(render.Progress(out, "Building"))
    for line in BUILD:
        steps.line(line)
    assert out.getvalue().splitlines() == BUILD


def test_the_agent_s_pull_lines_are_an_image_row_with_its_layers_under_it():
    out = io.StringIO()
    shown = render.Progress(out)
    pulls = render.PullRows(shown)
    for layer, status, current in (("aaa", "Waiting", 0), ("bbb", "Already exists", 0),
                                   ("aaa", "Downloading", 50), ("aaa", "Verifying Checksum", 100),
                                   ("aaa", "Download complete", 100), ("aaa", "Extracting", 0),
                                   ("aaa", "Pull complete", 0)):
        pulls.line({"type": "pull", "image": "web:1", "layer": layer, "status": status,
                    "current": current, "total": 100})
    assert out.getvalue().splitlines() == [
        "web:1  Pulling", "aaa: Waiting", "bbb: Already exists", "aaa: Downloading",
        "aaa: Verifying Checksum", "aaa: Download complete", "aaa: Extracting",
        "aaa: Pull complete", "web:1  Pulled"]


@pytest.mark.parametrize("no_color_flag, ansi, no_color_env, expected", [
    (False, "always", False, True), (True, "always", False, False),
    (False, "never", False, False), (False, "always", True, False)])
def test_log_colours_follow_no_color_ansi_and_the_environment(monkeypatch, no_color_flag, ansi,
                                                               no_color_env, expected):
    monkeypatch.setenv("NO_COLOR", "1" if no_color_env else "")
    progress.configure("auto", ansi, "logs")
    try:
        assert compose_logs._colour(argparse.Namespace(no_color=no_color_flag)) is expected
    finally:
        progress.configure(None, None, None)


def test_a_block_taller_than_the_terminal_ends_whole_and_once_in_its_scrollback(monkeypatch):
    monkeypatch.setattr(progress, "terminal_size", lambda stream: (60, 10))
    out, clock = io.StringIO(), Clock()
    out.write("$ pcompose up -d\n")
    block = progress.Block(out, "Running", colour=False, clock=clock)
    block._stop.set()
    block._thread = object()  # type: ignore[assignment]
    for i in range(30):
        clock.now += 0.2  # every event drawn
        block.event(ev(f"Container c-{i:02d}", "Creating", progress.WORKING))
    for i in range(30):
        clock.now += 0.2
        block.event(ev(f"Container c-{i:02d}", "Started"))
    block._thread = None
    block.close()
    term = screen.Screen(60, 10)
    term.feed(out.getvalue().replace("\n", "\r\n"))
    lines = term.text()
    assert lines[:2] == ["$ pcompose up -d", "[+] Running 30/30"] and len(lines) == 32, lines
    assert [line.split()[2] for line in lines[2:]] == [f"c-{i:02d}" for i in range(30)]
    assert all(" Started " in line for line in lines[2:]) and term.wraps == 0
