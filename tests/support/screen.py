"""A terminal's screen for tests: feed it what a program wrote to a pty, read the lines a user
sees (the VT100 subset progress output uses: cursor up/down/column, erase line and below,
colours and cursor visibility ignored, auto-wrap at the last column counted), and run a
command on a real pty of a given size."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")


class Screen:
    def __init__(self, columns: int, lines: int) -> None:
        self.columns, self.lines = columns, lines
        self.rows = [[" "] * columns for _ in range(lines)]
        self.scrolled: list[str] = []  # lines that went off the top
        self.x = self.y = 0
        self.pending_wrap = False
        self.wraps = 0  # lines a program let the terminal wrap

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            match = _CSI.match(text, i)
            if match:
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            ch = text[i]
            i += 1
            if ch == "\r":
                self.x, self.pending_wrap = 0, False
            elif ch == "\n":
                self._down()
            elif ch == "\x1b":
                continue  # another escape: not used by what is tested
            elif ch >= " ":
                if self.pending_wrap:
                    self.x, self.pending_wrap = 0, False
                    self.wraps += 1
                    self._down()
                self.rows[self.y][self.x] = ch
                if self.x == self.columns - 1:
                    self.pending_wrap = True
                else:
                    self.x += 1

    def _down(self) -> None:
        self.pending_wrap = False
        if self.y == self.lines - 1:
            self.scrolled.append("".join(self.rows.pop(0)).rstrip())
            self.rows.append([" "] * self.columns)
        else:
            self.y += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return  # cursor visibility
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = numbers[0] if numbers else 0
        self.pending_wrap = False
        if final == "A":
            self.y = max(0, self.y - max(n, 1))
        elif final == "B":
            self.y = min(self.lines - 1, self.y + max(n, 1))
        elif final == "G":
            self.x = min(self.columns - 1, max(n, 1) - 1)
        elif final == "H":
            self.y = min(self.lines - 1, max(n, 1) - 1)
            self.x = min(self.columns - 1, max(numbers[1] if len(numbers) > 1 else 1, 1) - 1)
        elif final == "K":
            row = self.rows[self.y]
            span = {0: range(self.x, self.columns), 1: range(self.x + 1)}.get(
                n, range(self.columns))
            for col in span:
                row[col] = " "
        elif final == "J" and n in (0, 2, 3):
            first = self.y + 1 if n == 0 else 0
            if n == 0:
                self._csi("", "K")
            for y in range(first, self.lines):
                self.rows[y] = [" "] * self.columns
        # m (colours) and anything else: nothing to place on the screen

    def display(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]

    def text(self) -> list[str]:
        """Every line written, the scrolled-off ones first, without the empty tail."""
        out = self.scrolled + self.display()
        while out and not out[-1]:
            out.pop()
        return out


def run_on_pty(argv: list[str], *, columns: int = 100, lines: int = 40, timeout: float = 120,
               **popen) -> tuple[int, str]:
    """Run argv with stdin, stdout and stderr on a new pty of that size; its exit code and
    all it wrote (the pty turns \\n into \\r\\n as a terminal does)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True, **popen)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} still ran after {timeout}s")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:  # ended, and a child of its own holds the pty
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the pty
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")
