"""Damaged pages in the desired-state store: the agent refuses to start on them and says where
the last good copy is, rather than serving 500 to every call with a dead resync; and that copy
brings the stack back."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

STACK = """
services:
  web:
    image: busybox:latest
    environment: {GREETING: hello}
    command: [sleep, "1000"]
"""


def stop_agent(stack) -> None:
    """SIGTERM by PID, and wait until the process is gone (it closes the store on its way)."""
    pid = stack.agent_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    subprocess.run(["tail", f"--pid={pid}", "-f", "/dev/null"], timeout=30, check=True)


def corrupt_page(db: Path, page: int) -> None:
    """Garbage over one page, as a torn write or a bad sector leaves it."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xde\xad" * (size // 2))


def test_an_agent_refuses_a_damaged_store_and_its_copy_brings_the_stack_back(stack):
    stack.write(STACK)
    stack.pc("up", "-d", "--wait")
    stop_agent(stack)  # a clean stop copies the store, with the project, aside
    db, backup = stack.root / "desired.db", stack.root / "desired.db.bak"
    assert backup.stat().st_mode & 0o777 == 0o600
    corrupt_page(db, 2)  # the projects table; page 1 (the schema) still reads

    done = stack.pc("agent", check=False, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"pcompose: error: the desired-state store {db} is damaged")
    assert f"cp {backup} {db}" in lines[0]
    assert stack.agent_pid() is None  # nothing answers: no agent half serving

    # A verb that starts an agent says so too, with the agent's last words.
    done = stack.pc("up", "-d", check=False, timeout=60)
    assert done.returncode != 0 and str(backup) in done.stderr, done.stderr

    # The copy, put back as the message says, is the stack as it was.
    subprocess.run(["cp", str(backup), str(db)], check=True)
    for leftover in ("desired.db-wal", "desired.db-shm"):
        (stack.root / leftover).unlink(missing_ok=True)
    stack.pc("up", "-d", "--wait")
    listed = stack.pc("ls").stdout
    assert stack.project in listed
    ps = stack.pc("ps", "--format", "json").stdout
    assert f'"{stack.project}-web-1"' in ps and '"running"' in ps
