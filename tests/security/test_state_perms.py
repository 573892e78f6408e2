"""A local user other than root reaches nothing under the state root and run dir: not the
setuid files containers leave in their roots, not the stacks' environment values in bundles
and in the store, whoever made those dirs first (`image load` on a fresh machine, as the
README's demo does) and however open they were made before."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from reconciler import cli
from tests.e2e.conftest import REPO, Stack, remove_stack
from tests.support.waiting import wait_for

# setpriv keeps root's capabilities until its own execve, which resolves the path with them:
# the command is exec'd by a shell that runs as nobody with none, as a local user's would.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
          "/bin/sh", "-c", 'exec "$@"', "sh"]
SECRET = "s3cret-of-the-db-9d1f"

STACK = f"""
services:
  app:
    image: busybox:latest
    environment:
      DB_PASSWORD: {SECRET}
    volumes: [data:/data]
    # What a container may well leave behind: a setuid-root binary in its root.
    command: ["sh", "-c", "cp /bin/busybox /x && chmod 4755 /x && touch /x.done && sleep 1000"]
  user1000:
    image: busybox:latest
    user: "1000"
    secrets: [token]
    configs: [settings]
    volumes: [data:/data:ro]
    command: ["sleep", "1000"]
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    content: "level=3"
volumes:
  data: {{}}
"""


@pytest.fixture
def fresh(busybox_archive) -> Stack:
    """A machine with no state root or run dir yet: the first `pcompose` makes them."""
    project = "t" + uuid.uuid4().hex[:7]
    root = Path("/var/lib/pcompose-test") / project
    run_dir = Path("/run/pcompose-test") / project
    stack_dir = root.parent / f"{project}-stack" / project
    stack_dir.mkdir(parents=True)
    host = f"pce2e{project}"
    made = Stack(root, run_dir, stack_dir, project, host)
    try:
        subprocess.run(["ip", "netns", "add", host], check=True)
        subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
        yield made
    finally:
        remove_stack(made)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def refused(*argv: str) -> bool:
    done = as_nobody(*argv)
    assert done.returncode != 0 and "Permission denied" in done.stderr, \
        f"nobody ran {argv}: {done.returncode} {done.stdout!r} {done.stderr!r}"
    return SECRET not in done.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nobody_reaches_nothing_under_the_root_and_run_dir_made_by_image_load(fresh,
                                                                              busybox_archive):
    stack = fresh
    stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    assert (mode(stack.root), stack.root.stat().st_uid) == (0o700, 0)  # before any agent
    (stack.dir / "token.txt").write_text("tok-123\n")
    stack.write(STACK)
    stack.pc("up", "-d", "--wait")
    cid = stack.pc("ps", "-q", "app").stdout.strip()  # its state is kept under its ID
    merged = stack.root / "rootfs" / cid / "merged"
    wait_for(lambda: (merged / "x.done").exists())
    setuid = merged / "x"
    assert setuid.stat().st_mode & stat.S_ISUID and setuid.stat().st_uid == 0

    # The local user: no listing, no stat, no exec of the setuid copy, no reading of secrets.
    for path in (stack.root, stack.run_dir):
        assert refused("ls", str(path))
    assert refused("stat", str(stack.root / "containers"))
    assert refused("stat", str(stack.run_dir / "agent.sock"))
    assert refused(str(setuid), "id", "-u")
    db = sorted(stack.root.glob("desired.db*"))
    assert {p.name for p in db} >= {"desired.db", "desired.db-wal", "desired.db.bak"}
    for path in [stack.root / "containers" / cid / "config.json", *db]:
        assert refused("cat", str(path))
    # What the user could read before: the secret value is where a reader would look.
    assert SECRET in (stack.root / "containers" / cid / "config.json").read_text()

    # And root's own view: the modes that keep it so even below the root.
    assert (mode(stack.run_dir), stack.run_dir.stat().st_uid) == (0o700, 0)
    files = [stack.root / "containers" / cid / "config.json", *db,
             stack.root / "logs" / "agent.log",
             stack.root / "volumes" / f"{stack.project}_data" / "meta.json",
             *(stack.root / "net").rglob("*.json")]
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
    assert len(list((stack.root / "net").rglob("*.json"))) >= 2  # a network and a container


def test_a_container_of_user_1000_starts_and_reads_its_files_through_the_private_dirs(
        fresh, busybox_archive):
    stack = fresh
    stack.pc("image", "load", "-q", "-i", str(busybox_archive))
    (stack.dir / "token.txt").write_text("tok-123\n")
    stack.write(STACK)
    stack.pc("up", "-d", "--wait", "user1000")
    script = ("id -u; cat /run/secrets/token /settings; echo; grep -q localhost /etc/hosts && "
              "cat /etc/hostname >/dev/null && ls -d /data /bin/busybox && echo done")
    done = stack.pc("exec", "-T", "user1000", "sh", "-c", script)
    assert done.stdout.split() == ["1000", "tok-123", "level=3", "/bin/busybox", "/data",
                                   "done"], done.stderr
    assert mode(stack.root) == 0o700 and mode(stack.run_dir) == 0o700


def test_an_agent_tightens_a_root_and_run_dir_made_open_before_it(stack):
    # The e2e fixture makes both with mkdir's 0755, as a user or an older version would.
    assert (mode(stack.root), mode(stack.run_dir)) == (0o755, 0o755)
    stack.write("services:\n  app:\n    image: busybox:latest\n    command: [sleep, '1000']\n")
    stack.pc("up", "-d")
    assert (mode(stack.root), mode(stack.run_dir)) == (0o700, 0o700)
    assert refused("ls", str(stack.root))
    log = (stack.root / "logs" / "agent.log").read_text()
    assert '"state_dir.tightened"' in log and str(stack.root) in log


# Every verb but the two that only read the stack file, with arguments a user might give.
ARGS = {"image": ["load", "-i", "x"], "exec": ["web", "sh"], "cp": ["web:/etc/hosts", "."],
        "logs": ["-f"], "up": ["-d"]}
VERBS = sorted(v for owned in cli.VERB_MODULES.values() for v in owned
               if v not in ("config", "version"))


@pytest.mark.parametrize("verb", [[v, *ARGS.get(v, [])] for v in VERBS], ids=VERBS)
def test_the_cli_as_another_user_says_it_needs_root_in_one_line(verb, tmp_path):
    # The system's Python: the venv's interpreter lives under /root, which nobody cannot
    # enter; the refusal comes before anything beyond the standard library is imported.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/nonexistent"}
    done = subprocess.run([*NOBODY, "/usr/bin/python3", "-m", "reconciler.cli",
                           "--root", str(tmp_path / "root"), "--run-dir", str(tmp_path / "run"),
                           *verb], capture_output=True, text=True, env=env, cwd="/", timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith(f"pcompose: error: must be run as root ({verb[0]}: ")
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


def test_help_and_version_need_no_root(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/nonexistent"}
    for argv in (["ps", "--help"], ["version"]):
        done = subprocess.run([*NOBODY, "/usr/bin/python3", "-m", "reconciler.cli", *argv],
                              capture_output=True, text=True, env=env, cwd="/", timeout=30)
        assert done.returncode == 0 and done.stderr == "", done.stderr
