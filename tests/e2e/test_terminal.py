"""What a user sees on a real terminal: `up -d`, `down` and `pull` run on a pty and the screen
they leave, one line per resource in its final state under a header with the right counts;
and the plain and JSON lines the same verbs write elsewhere."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import oci_image, registry, screen

pytestmark = [pytest.mark.linux, pytest.mark.slow]

STACK = """
services:
  web:
    image: busybox:latest
    command: ["sleep", "600"]
  worker:
    image: busybox:latest
    command: ["sleep", "600"]
"""

# ` ✔ Container p-web-1  Started    0.4s`: mark, name, word(s), elapsed time at the end.
ROW = re.compile(r"^ *(?P<mark>[✔✘⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) (?P<name>\S+ \S+|\S+) +(?P<word>\S.*?) +"
                 r"(?P<time>\d+\.\ds)$")


def on_terminal(stack, *args: str, columns: int = 100, lines: int = 40) -> screen.Screen:
    code, written = screen.run_on_pty(stack.argv(*args), columns=columns, lines=lines,
                                      env=stack.env(), cwd=stack.dir)
    term = screen.Screen(columns, lines)
    term.feed(written)
    assert code == 0, "\n".join(term.text())
    assert term.wraps == 0, "a line was wider than the terminal:\n" + "\n".join(term.text())
    return term


def block(term: screen.Screen) -> tuple[str, dict[str, tuple[str, str]]]:
    """The header and {name: (mark, word)} of the screen's only block."""
    text = term.text()
    headers = [line for line in text if line.startswith("[+] ")]
    assert len(headers) == 1, text
    rows = {}
    for line in text[text.index(headers[0]) + 1:]:
        match = ROW.match(line)
        assert match, f"not a progress line: {line!r} in\n" + "\n".join(text)
        assert match["name"] not in rows, f"{match['name']} twice:\n" + "\n".join(text)
        rows[match["name"]] = (match["mark"], match["word"])
    return headers[0], rows


def test_up_and_down_on_a_terminal_leave_one_line_per_resource(stack):
    stack.write(STACK)
    p = stack.project
    header, rows = block(on_terminal(stack, "up", "-d"))
    assert rows == {f"Network {p}_default": ("✔", "Created"),
                    f"Container {p}-web-1": ("✔", "Started"),
                    f"Container {p}-worker-1": ("✔", "Started")}
    assert header == "[+] Running 3/3"

    header, rows = block(on_terminal(stack, "stop", "worker"))
    assert (header, rows) == ("[+] Stopping 1/1", {f"Container {p}-worker-1": ("✔", "Stopped")})

    header, rows = block(on_terminal(stack, "down"))
    assert rows == {f"Network {p}_default": ("✔", "Removed"),
                    f"Container {p}-web-1": ("✔", "Removed"),
                    f"Container {p}-worker-1": ("✔", "Removed")}
    assert header == "[+] Running 3/3"


def test_a_narrow_terminal_cuts_long_names_instead_of_wrapping(stack):
    long = "a-service-with-a-name-longer-than-this-terminal-is-wide"
    stack.write(f"services:\n  {long}:\n    image: busybox:latest\n"
                "    command: [\"sleep\", \"600\"]\n")
    term = on_terminal(stack, "up", "-d", columns=40)  # no wrapped line: checked there
    header, rows = block(term)
    assert header == "[+] Running 2/2"
    assert all(len(line) < 40 for line in term.text())
    [container] = [name for name in rows if name.startswith("Container")]
    assert container.endswith("…") and rows[container] == ("✔", "Started")


def test_a_failing_container_is_marked_and_its_error_shown_below(stack):
    stack.write("services:\n  job:\n    image: busybox:latest\n    command: [\"false\"]\n"
                "  web:\n    image: busybox:latest\n    command: [\"sleep\", \"600\"]\n"
                "    depends_on:\n      job:\n        condition: service_completed_successfully\n")
    code, written = screen.run_on_pty(stack.argv("up", "-d"), env=stack.env(), cwd=stack.dir)
    term = screen.Screen(100, 40)
    term.feed(written)
    text = term.text()
    assert code != 0, text
    failed = [i for i, line in enumerate(text) if line.startswith(" ✘ Container ")]
    [error] = [i for i, line in enumerate(text) if line.startswith("pcompose: error:")]
    assert failed and error > max(failed), text  # below the final block, not inside it
    assert text[0].startswith("[+] Running ") and sum(line.startswith("[+]") for line in text) == 1


def test_plain_and_json_progress_line_by_line(stack):
    stack.write(STACK)
    p = stack.project
    plain = stack.pc("--progress", "plain", "up", "-d").stderr.splitlines()
    assert sorted(plain) == sorted([
        f"Network {p}_default  Creating", f"Network {p}_default  Created",
        f"Container {p}-web-1  Creating", f"Container {p}-web-1  Created",
        f"Container {p}-web-1  Started",
        f"Container {p}-worker-1  Creating", f"Container {p}-worker-1  Created",
        f"Container {p}-worker-1  Started"])
    events = [json.loads(line) for line in
              stack.pc("--progress", "json", "stop").stderr.splitlines()]
    assert sorted((e["id"], e["text"], e["state"]) for e in events) == [
        (f"Container {p}-web-1", "Stopped", "done"),
        (f"Container {p}-web-1", "Stopping", "working"),
        (f"Container {p}-worker-1", "Stopped", "done"),
        (f"Container {p}-worker-1", "Stopping", "working")]
    assert stack.pc("--progress", "quiet", "start").stderr == ""
    # Off a terminal, --ansi always draws the block anyway (docker compose's rule).
    drawn = stack.pc("--ansi", "always", "stop").stderr
    assert "\x1b[" in drawn and "[+] Stopping 2/2" in drawn


@pytest.fixture
def pushed(tmp_path):
    """An image of two layers in a registry on 127.0.0.1, and its reference."""
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running(work) as reg:
            layout = tmp_path / "layout"
            oci_image.write_layout(layout, [oci_image.busybox_layer(),
                                            oci_image.LayerBuilder().file("etc/app", "x").build()],
                                   "1.0")
            reg.push(layout, "1.0", "term/web:1.0")
            yield f"{reg.host}/term/web:1.0"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_pull_on_a_terminal_shows_each_layer_under_its_image(stack, pushed):
    term = on_terminal(stack, "pull", pushed)
    header, rows = block_above(term, pushed)
    layers = {name: row for name, row in rows.items() if name != pushed}
    assert rows[pushed] == ("✔", "Pulled")
    assert len(layers) == 2 and all(re.fullmatch(r"[0-9a-f]{12}", n) for n in layers)
    assert set(layers.values()) == {("✔", "Pull complete")}
    assert header == "[+] Pulling 3/3"

    header, rows = block_above(on_terminal(stack, "pull", pushed), pushed)
    assert {row for name, row in rows.items() if name != pushed} == {("✔", "Already exists")}
    assert header == "[+] Pulling 3/3"


def block_above(term: screen.Screen, ref: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """The pull's block, without the reference it prints on stdout after it."""
    text = term.text()
    assert text[-1] == ref, text
    trimmed = screen.Screen(term.columns, term.lines)
    trimmed.feed("\r\n".join(text[:-1]))
    return block(trimmed)


def test_up_shows_the_pull_the_agent_makes_layer_by_layer(stack, pushed):
    stack.write(f"services:\n  web:\n    image: {pushed}\n    command: [\"sleep\", \"600\"]\n")
    p = stack.project
    header, rows = block(on_terminal(stack, "up", "-d"))
    layers = {name: row for name, row in rows.items() if re.fullmatch(r"[0-9a-f]{12}", name)}
    assert rows[pushed] == ("✔", "Pulled")
    assert len(layers) == 2 and set(layers.values()) == {("✔", "Pull complete")}
    assert rows[f"Container {p}-web-1"] == ("✔", "Started")
    assert rows[f"Network {p}_default"] == ("✔", "Created")
    assert len(rows) == 5 and header == "[+] Running 5/5"


def test_an_attached_up_ends_its_block_before_the_logs_start(stack):
    stack.write("services:\n  job:\n    image: busybox:latest\n"
                "    command: [\"sh\", \"-c\", \"echo hello from the job\"]\n")
    p = stack.project
    text = on_terminal(stack, "up").text()
    attaching = text.index("Attaching to job-1")
    before = screen.Screen(100, 40)
    before.feed("\r\n".join(text[:attaching]))
    header, rows = block(before)
    assert rows == {f"Network {p}_default": ("✔", "Created"),
                    f"Container {p}-job-1": ("✔", "Started")}
    assert header == "[+] Running 2/2"
    after = text[attaching + 1:]
    assert after[0].startswith("job-1") and after[0].endswith("| hello from the job"), text
    assert after[-1] == "job-1 exited with code 0", text
