"""`pcompose run` as docker compose's: a shell on the user's terminal (typed input, Ctrl-C,
Ctrl-D, the window's size), piped input passed on with -T, the exit code, and a one-off that
outlives a CLI that dies."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.support import waiting

STACK = """\
services:
  box:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
"""


class Terminal:
    """pcompose on a terminal of its own, as a user types into it; killed by PID if it outlives
    the test."""

    def __init__(self, stack, *args: str, rows: int = 40, cols: int = 132) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is ours, sized as the user's window
            try:
                _set_size(0, rows, cols)
                os.chdir(stack.dir)
                os.execve(sys.executable, stack.argv(*args), stack.env())
            finally:
                os._exit(127)
        self.seen = b""
        self.code: int | None = None

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def resize(self, rows: int, cols: int) -> None:
        _set_size(self.fd, rows, cols)  # the kernel tells the terminal's foreground: SIGWINCH

    def expect(self, text: bytes, timeout: float = 30.0) -> bytes:
        """Read until `text` has been shown; what was shown up to there (and it is consumed)."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"never shown: {text!r}; shown: {self.seen.decode(errors='replace')}")
        shown, _, self.seen = self.seen.partition(text)
        return shown + text

    def _read(self, timeout: float) -> bool:
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: pcompose has ended and the terminal is gone
            return False
        self.seen += data
        return bool(data)

    def wait(self, timeout: float = 30.0) -> int:
        while self._read(timeout):
            pass
        _, status = os.waitpid(self.pid, 0)
        self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def close(self) -> None:
        if self.code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ProcessLookupError:
                pass
            self.code = -1
        os.close(self.fd)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.fixture
def terminal():
    made: list[Terminal] = []

    def start(stack, *args: str, **size) -> Terminal:
        made.append(Terminal(stack, *args, **size))
        return made[-1]

    try:
        yield start
    finally:
        for term in made:
            term.close()


def wait_for_process(argv: list[bytes], timeout: float = 30.0) -> int:
    """The PID of the process running `argv` (in a container: its PID on the host)."""
    cmdline = b"\0".join(argv) + b"\0"

    def found() -> int | None:
        for proc in os.listdir("/proc"):
            try:
                if proc.isdigit() and open(f"/proc/{proc}/cmdline", "rb").read() == cmdline:
                    return int(proc)
            except OSError:
                continue
        return None

    return waiting.wait_for(found, timeout=timeout, what=f"{argv} to run")


def oneoffs(stack) -> dict[str, str]:
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout.splitlines()]
    return {r["Name"]: r["State"] for r in rows if "-box-run-" in r["Name"]}


def test_run_gives_a_shell_on_the_terminal(stack, terminal):
    stack.write(STACK)
    term = terminal(stack, "run", "--rm", "box", "sh")  # -it: stdin and stdout are a terminal
    term.expect(b"# ")
    term.type(b"echo on-$(tty) $(stty size)\r")
    shown = term.expect(b"\r\non-")
    assert shown.count(b"echo on-") == 1  # echoed by the container's terminal only: ours is raw
    assert term.expect(b"\r\n") == b"/dev/pts/0 40 132\r\n"

    term.resize(50, 100)  # the shell redraws its prompt on the change: expect markers from here
    for _ in range(50):  # the new size travels through pcompose and conmon; ask until it is there
        term.type(b"echo size-$(stty size)\r")
        term.expect(b"\r\nsize-")  # the command's output, not its echo
        if term.expect(b"\r\n") == b"50 100\r\n":
            break
    else:
        raise AssertionError("the container's terminal never took the window's size")

    term.type(b"sleep 1001\r")
    sleeping = wait_for_process([b"sleep", b"1001"])
    term.type(b"\x03")  # Ctrl-C: SIGINT to the container's foreground, not to pcompose
    term.type(b"echo back-$((2+3))\r")  # the shell runs it once sleep is gone
    term.expect(b"\r\nback-5\r\n")
    assert not os.path.exists(f"/proc/{sleeping}")
    # Type once the shell runs the line, as a user does: what the shell's line editor has not
    # handed back to the terminal yet would not be cat's.
    term.type(b"echo reading; cat > /tmp/typed\r")
    term.expect(b"\r\nreading\r\n")
    term.type(b"typed line\r\x04")  # Ctrl-D ends cat's input
    term.type(b"cat /tmp/typed; exit 7\r")
    term.expect(b"typed line\r\n")  # echoed as typed
    term.expect(b"typed line\r\n")  # shown by cat
    assert term.wait() == 7
    assert oneoffs(stack) == {}  # --rm


def test_run_T_passes_piped_input_and_keeps_stderr_apart(stack):
    stack.write(STACK)
    done = stack.pc("run", "--rm", "-T", "box", "cat", input="hi\n")
    assert done.stdout == "hi\n"
    script = "tr a-z A-Z; echo to-stderr >&2; exit 3"
    done = stack.pc("run", "--rm", "-T", "box", "sh", "-c", script, input="piped\n", check=False)
    assert (done.returncode, done.stdout) == (3, "PIPED\n")
    assert done.stderr.endswith("to-stderr\n")
    # Input and output far larger than any buffer on the way, at the same time.
    text = "".join(f"line {n:06d}\n" for n in range(40000))
    done = stack.pc("run", "--rm", "-T", "box", "cat", input=text)
    assert done.stdout == text
    # A reader that goes away ends run, and --rm still removes the one-off.
    head = subprocess.run(f"{shlex.join(stack.argv('run', '--rm', '-T', 'box', 'yes'))} | head -1",
                          shell=True, cwd=stack.dir, env=stack.env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert head.stdout == "y\n" and "Traceback" not in head.stderr
    assert oneoffs(stack) == {}


def test_a_one_off_outlives_its_cli_and_down_removes_it(stack, terminal):
    stack.write(STACK)
    term = terminal(stack, "run", "box", "sh")
    term.expect(b"# ")
    term.type(b"echo alive\r")
    term.expect(b"\r\nalive\r\n")
    os.kill(term.pid, signal.SIGKILL)
    term.wait()
    (name, state), = oneoffs(stack).items()
    assert state == "running"
    down = stack.pc("down")
    assert f"Container {name}  Removed" in down.stderr
    assert oneoffs(stack) == {}


def test_signals_to_run_go_to_the_one_off(stack):
    stack.write(STACK)
    script = "trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 1; done"
    proc = stack.start("run", "--rm", "-T", "box", "sh", "-c", script)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)  # Ctrl-C without a terminal: pcompose passes it on
        assert proc.wait(timeout=60) == 9
        assert proc.stdout.read() == "got-int\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert oneoffs(stack) == {}
