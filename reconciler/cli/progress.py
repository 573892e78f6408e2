"""Progress as docker compose shows it: a block redrawn in place on a terminal, plain lines,
JSON events or nothing (`--progress auto|tty|plain|quiet|json`, `--ansi`, NO_COLOR).

A verb reports events (`Container shop-web-1` is `Started`); a writer shows them. The
terminal's block is drawn by `draw`, a pure function of the rows and the time, so its text is
tested as text; `Block` only owns the cursor and a thread that redraws at most ten times a
second, so the verb never waits for the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

WORKING, DONE, ERROR = "working", "done", "error"
MODES = ("auto", "tty", "plain", "quiet", "json")
ANSI = ("never", "always", "auto")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
FRAME = 0.1  # seconds between redraws: docker compose's ticker

# The block's header per verb, in docker compose's words; every other verb is `Running`.
TITLES = {"stop": "Stopping", "start": "Starting", "restart": "Restarting", "kill": "Killing",
          "rm": "Removing", "pull": "Pulling", "build": "Building", "pause": "Pausing",
          "unpause": "Unpausing"}

# Words that end a resource's work although they read like progress.
_DONE_WORDS = ("Running", "Healthy", "Exited", "Already exists", "Pull complete",
               "Download complete", "Pulled")
_WORKING_WORDS = ("Recreate", "Verifying Checksum", "Pulling fs layer")


@dataclasses.dataclass(frozen=True)
class Event:
    """What one resource (or one layer of an image: `parent`) is doing now."""
    id: str                # `Container shop-web-1`, `Image busybox`, a layer's 12 hex digits
    text: str              # `Started`, `Downloading`, `Error`
    status: str = WORKING  # WORKING, DONE or ERROR
    detail: str = ""       # an error's message
    parent: str = ""       # the id of the row this one is shown under
    current: int = 0       # bytes done / of total, for a download
    total: int = 0


def word_status(word: str) -> str:
    """Whether a progress word (`Stopping`, `Stopped`, `Error ...`) is work going on or ended."""
    if word.startswith("Error"):
        return ERROR
    if word in _DONE_WORDS:
        return DONE
    return WORKING if word.endswith("ing") or word in _WORKING_WORDS else DONE


def parse_line(text: str) -> Event:
    """`Container shop-web-1  Started` (the verbs' progress lines) as an event."""
    title, sep, word = text.rpartition("  ")
    if not sep:
        title, word = text, ""
    status = word_status(word)
    if status == ERROR:
        return Event(title, "Error", ERROR, word[len("Error"):].strip())
    return Event(title, word, status)


# -- which writer
@dataclasses.dataclass(frozen=True)
class Settings:
    progress: str = "auto"  # MODES
    ansi: str = "auto"      # ANSI
    title: str = "Running"
    no_color: bool = False  # NO_COLOR in the environment


_settings = Settings()


def configure(progress: str | None, ansi: str | None, verb: str | None) -> None:
    """The global options of this run (cli.main), for every writer the verb makes."""
    global _settings
    _settings = Settings(progress or "auto", ansi or "auto", TITLES.get(verb or "", "Running"),
                         bool(os.environ.get("NO_COLOR")))


def settings() -> Settings:
    return _settings


def mode_for(config: Settings, terminal: bool) -> str:
    """tty, plain, quiet or json: docker compose's rule (auto draws in place on a terminal
    unless ANSI is off; --ansi always draws in place anywhere)."""
    if config.progress in ("plain", "quiet", "json"):
        return config.progress
    if config.progress == "tty":
        return "tty"
    if config.ansi == "never":
        return "plain"
    return "tty" if terminal or config.ansi == "always" else "plain"


def colour_for(config: Settings, terminal: bool) -> bool:
    """Colours: off with NO_COLOR or --ansi never, else on a terminal or with --ansi always."""
    if config.no_color or config.ansi == "never":
        return False
    return config.ansi == "always" or terminal


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def writer(stream: TextIO, title: str | None = None, config: Settings | None = None):
    """The writer for `stream` under this run's settings: Block, Lines, JsonLines or Quiet."""
    config = config or _settings
    terminal = is_terminal(stream)
    mode = mode_for(config, terminal)
    if mode == "tty":
        return Block(stream, title or config.title, colour_for(config, terminal))
    if mode == "json":
        return JsonLines(stream)
    if mode == "quiet":
        return Quiet()
    return Lines(stream)


# -- plain, json, quiet
class Lines:
    """Off a terminal: a line each time a resource's word changes, as pcompose always wrote
    them (`Container x  Started`; a layer: `3f4ca61aafcd: Downloading`)."""

    mode = "plain"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last: dict[str, tuple[str, str]] = {}

    def event(self, e: Event) -> None:
        if self._last.get(e.id) == (e.text, e.detail):
            return
        self._last[e.id] = (e.text, e.detail)
        text = f"{e.id}: {e.text}" if e.parent else f"{e.id}  {e.text}"
        print(f"{text} {e.detail}" if e.detail else text, file=self.stream, flush=True)

    def close(self) -> None:
        self._last.clear()


class JsonLines:
    """`--progress json`: one object per event, docker compose's keys (empty ones left out)."""

    mode = "json"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def event(self, e: Event) -> None:
        print(json.dumps(event_json(e)), file=self.stream, flush=True)

    def close(self) -> None:
        pass


def event_json(e: Event) -> dict:
    out: dict = {"id": e.id, "parent_id": e.parent, "text": e.text, "status": e.detail,
                 "current": e.current, "total": e.total,
                 "percent": min(100, e.current * 100 // e.total) if e.total else 0}
    out = {k: v for k, v in out.items() if v}
    out["state"] = e.status  # working, done, error: what a tool waits for
    return out


class Quiet:
    mode = "quiet"

    def event(self, e: Event) -> None:
        pass

    def close(self) -> None:
        pass


# -- the block on a terminal
@dataclasses.dataclass(frozen=True)
class Row:
    """A row of the block: the resource's last event and when its work began and ended."""
    event: Event
    started: float
    ended: float | None = None


def advance(rows: dict[str, Row], e: Event, now: float) -> dict[str, Row]:
    """The rows after event `e` (pure): a row keeps its place and its start; its clock stops
    when it is done or failed and starts again if it works again."""
    old = rows.get(e.id)
    if old is None:
        row = Row(e, now, None if e.status == WORKING else now)
    elif e.status == WORKING:
        row = Row(e, old.started if old.ended is None else now)
    else:
        row = Row(e, old.started, old.ended if old.ended is not None and
                  old.event.status == e.status else now)
    return {**rows, e.id: row}


def draw(rows: dict[str, Row], title: str, now: float, width: int, colour: bool,
         frame: int = 0, height: int = 0) -> list[str]:
    """The block's lines (no newline, each shorter than `width`): the header, then each row
    and under it its children, an error's message on its own line. With `height`, only as
    many rows as fit, the last ones (the final draw passes none: the whole block)."""
    width = max(width, 20)
    top = [r for r in rows.values() if not r.event.parent]
    done = sum(1 for r in rows.values() if r.event.status == DONE)
    header = f"[+] {title} {done}/{len(rows)}"
    if colour and rows and done == len(rows):
        header = _paint(header, "34")
    # The names' column: as wide as the longest, unless that leaves no room for the words
    # and the timer (then long names are cut with an ellipsis, never wrapped).
    longest = max((len(r.event.id) + (2 if r.event.parent else 0) for r in rows.values()),
                  default=0)
    words = max((len(r.event.text) for r in rows.values()), default=0)
    id_width = max(min(longest, width - 1 - 8 - 5 - words), 6)
    lines = []
    for row in top:
        lines += _row_lines(row, "", now, width, id_width, colour, frame)
        for child in rows.values():
            if child.event.parent == row.event.id:
                lines += _row_lines(child, "  ", now, width, id_width, colour, frame)
    for child in rows.values():  # children whose parent has no row of its own
        if child.event.parent and child.event.parent not in rows:
            lines += _row_lines(child, "  ", now, width, id_width, colour, frame)
    if height and len(lines) + 1 >= height:
        lines = lines[len(lines) + 2 - height:]
    return [_fit(header, width), *lines]


def _row_lines(row: Row, pad: str, now: float, width: int, id_width: int, colour: bool,
               frame: int) -> list[str]:
    e = row.event
    mark, code = {DONE: ("✔", "32"), ERROR: ("✘", "31")}.get(
        e.status, (SPINNER[frame % len(SPINNER)], "34"))
    timer = f"{(row.ended if row.ended is not None else now) - row.started:.1f}s"
    room = width - 1 - len(timer) - 1  # the timer right-aligned, the last column left free
    name = ellipsis(e.id, id_width - len(pad)).ljust(id_width - len(pad))
    extra = ""
    if e.total and e.status == WORKING:
        space = room - len(pad) - 5 - len(name) - len(e.text) - 1
        extra = " " + transfer(e.current, e.total, space)
        if len(extra) > space + 1:  # not even the numbers fit: the word alone
            extra = ""
    plain = f"{pad} {mark} {name}  {e.text}{extra}"
    if len(plain) > room:  # a terminal too narrow for even the cut name: cut the line
        line = ellipsis(plain, room)
    elif colour:
        line = f"{pad} {_paint(mark, code)} {name}  {_paint(e.text, code)}{extra}" \
            + " " * (room - len(plain))
    else:
        line = plain.ljust(room)
    out = [f"{line} {timer}"]
    if e.detail and e.status == ERROR:
        message = ellipsis(f"{pad}   {e.detail}", width - 1)
        out.append(_paint(message, "31") if colour else message)
    elif e.detail and e.status == WORKING:  # a running build step's last lines of output
        for text in e.detail.splitlines():
            message = ellipsis(f"{pad}   => # {text}", width - 1)
            out.append(_paint(message, "2") if colour else message)
    return out


def transfer(current: int, total: int, room: int) -> str:
    """docker's pull progress: `[=====>      ]  1.21MB/3.4MB`, the bar as wide as there is
    room for (at most 50, none when narrow)."""
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    bar_width = min(50, room - len(numbers) - 4)
    if bar_width < 10:
        return numbers
    filled = min(bar_width, current * bar_width // total) if total else 0
    return f"[{'=' * filled}>{' ' * (bar_width - filled)}] {numbers}"


def human_size(n: float) -> str:
    """docker's units.HumanSize: 1000-based, four significant digits: `1.234MB`."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n}"


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _fit(text: str, width: int) -> str:
    return text if len(text) < width or "\x1b" in text else ellipsis(text, width - 1)


def _paint(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


def terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    # A pty nobody sized says 0x0: a terminal's usual size then.
    return size.columns or 80, size.lines or 24


class Block:
    """The block on a terminal: events update rows; a thread redraws them in place at most
    every FRAME (only when something changed or a spinner turns); close() draws the final
    block, whole, and leaves it on screen."""

    mode = "tty"

    def __init__(self, stream: TextIO, title: str, colour: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.title, self.colour, self.clock = stream, title, colour, clock
        self.rows: dict[str, Row] = {}
        self._lock = threading.Lock()
        self._drawn = 0       # lines the last draw left above the cursor
        self._frame = 0
        self._dirty = False
        self._last_draw = -FRAME
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.draws = 0        # for tests and the bench: how often the block was drawn

    def event(self, e: Event) -> None:
        with self._lock:
            now = self.clock()
            self.rows = advance(self.rows, e, now)
            self._dirty = True
            if now - self._last_draw >= FRAME:  # shown at once unless drawn just now
                with contextlib.suppress(OSError, ValueError):
                    self._draw(final=False)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(FRAME):
            with self._lock:
                working = any(r.event.status == WORKING for r in self.rows.values())
                # An event may have drawn the block just now: the next frame can wait.
                recent = self.clock() - self._last_draw < FRAME * 0.8
                if not (self._dirty or working) or recent:
                    continue
                try:
                    self._draw(final=False)
                except (OSError, ValueError):  # the terminal went away: nothing to show on
                    return

    def close(self) -> None:
        """Draw the final block and stop redrawing; a later event begins a new block."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join()
        with self._lock:
            if self.rows:
                with contextlib.suppress(OSError, ValueError):
                    self._draw(final=True)
            self.rows, self._drawn, self._thread = {}, 0, None

    def _draw(self, final: bool) -> None:
        width, height = terminal_size(self.stream)
        self._frame += 1
        lines = draw(self.rows, self.title, self.clock(), width, self.colour, self._frame,
                     0 if final else height)
        up = f"\x1b[{self._drawn}A\r" if self._drawn else ""
        body = "".join(f"\x1b[2K{line}\n" for line in lines)
        # The cursor is hidden while the block is rewritten, so it does not flicker across it.
        self.stream.write(f"\x1b[?25l{up}{body}\x1b[J\x1b[?25h")
        self.stream.flush()
        self._drawn = len(lines)
        self._dirty = False
        self._last_draw = self.clock()
        self.draws += 1


# -- every writer of this run, closed before the process says anything else
_open: list = []


def track(w) -> None:
    if not any(o is w for o in _open):
        _open.append(w)


def close_all() -> None:
    """End every block still drawn (cli.main, before an error or the exit)."""
    while _open:
        _open.pop().close()
