"""`pcompose cp` as a docker compose user runs it: files and dirs both ways between the host and
a service's container, running or stopped, docker's rules for where a copy lands, tar streams
on stdin and stdout, owners, a volume's content, and the errors docker gives."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

SLEEPER = """
services:
  app:
    image: busybox:latest
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    volumes: ["data:/vol"]
volumes:
  data: {}
"""


@pytest.fixture
def app(stack):
    stack.write(SLEEPER)
    stack.pc("up", "-d")
    return stack


def sh(stack, script: str, service: str = "app") -> str:
    return stack.pc("exec", "-T", service, "sh", "-c", script).stdout


def cp_bytes(stack, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    """pcompose cp with binary stdin/stdout (a tar stream)."""
    return subprocess.run(stack.argv("cp", *args), cwd=stack.dir, capture_output=True,
                          env=stack.env(), input=data, timeout=120,
                          stdin=None if data is not None else subprocess.DEVNULL)


def tar_of(members: dict[str, bytes | None]) -> bytes:
    """A tar of files (bytes) and dirs (None), in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_file_goes_in_and_comes_back_out(app):
    (app.dir / "hello.txt").write_text("hello\n")
    done = app.pc("cp", "hello.txt", "app:/tmp/hello.txt")
    assert f"{app.project}-app-1 copy hello.txt to {app.project}-app-1:/tmp/hello.txt" in done.stderr
    assert sh(app, "cat /tmp/hello.txt") == "hello\n"
    app.pc("cp", "app:/tmp/hello.txt", "back.txt")
    assert (app.dir / "back.txt").read_text() == "hello\n"
    # Into an existing dir under its own name; docker's container paths are from the root.
    app.pc("cp", "hello.txt", "app:tmp")
    assert sh(app, "cat /tmp/hello.txt") == "hello\n"
    (app.dir / "out").mkdir()
    app.pc("cp", "app:/etc/hostname", "out")
    assert (app.dir / "out" / "hostname").read_text().strip() == sh(app, "hostname").strip()
