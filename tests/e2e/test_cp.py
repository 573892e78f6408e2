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
    # Without -a the copy is root's in the container and the caller's on the host.
    os.chown(app.dir / "hello.txt", 1234, 5678)
    os.chmod(app.dir / "hello.txt", 0o640)
    app.pc("cp", "hello.txt", "app:/tmp/plain.txt")
    assert sh(app, "stat -c %u:%g:%a /tmp/plain.txt") == "0:0:640\n"
    sh(app, "echo theirs > /tmp/theirs && chown 4321:8765 /tmp/theirs")
    app.pc("cp", "app:/tmp/theirs", "theirs")
    assert (os.stat(app.dir / "theirs").st_uid, os.stat(app.dir / "theirs").st_gid) == (os.getuid(), os.getgid())


def test_archive_mode_keeps_the_owners_both_ways(app):
    (app.dir / "mine").mkdir()
    (app.dir / "mine" / "f").write_text("f\n")
    for path in (app.dir / "mine", app.dir / "mine" / "f"):
        os.chown(path, 1234, 5678)
    app.pc("cp", "-a", "mine", "app:/tmp/mine")
    assert sh(app, "stat -c %u:%g /tmp/mine /tmp/mine/f") == "1234:5678\n1234:5678\n"
    sh(app, "echo theirs > /tmp/theirs && chown 4321:8765 /tmp/theirs")
    app.pc("cp", "--archive", "app:/tmp/theirs", "theirs")
    st = os.stat(app.dir / "theirs")
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_dirs_land_where_docker_puts_them(app):
    tree = app.dir / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.txt").write_text("b\n")
    app.pc("cp", "tree", "app:/tmp/new")  # DEST missing: made, with the dir's contents
    assert sh(app, "cat /tmp/new/a.txt /tmp/new/sub/b.txt") == "a\nb\n"
    app.pc("cp", "tree", "app:/tmp/new")  # DEST a dir: the dir goes into it
    assert sh(app, "cat /tmp/new/tree/a.txt") == "a\n"
    sh(app, "mkdir /tmp/contents")
    app.pc("cp", "tree/.", "app:/tmp/contents")  # SRC/.: the contents go into it
    assert sh(app, "ls /tmp/contents") == "a.txt\nsub\n"

    app.pc("cp", "app:/tmp/new", "got")
    assert sorted(p.name for p in (app.dir / "got").iterdir()) == ["a.txt", "sub", "tree"]
    (app.dir / "got2").mkdir()
    app.pc("cp", "app:/tmp/new/sub/.", "got2")
    assert [p.name for p in (app.dir / "got2").iterdir()] == ["b.txt"]

    ctr = f"{app.project}-app-1"
    for args, message in (
            (("tree", "app:/etc/hostname"), "cannot copy a directory to a file"),
            (("tree/a.txt", "app:/tmp/nodir/"), "no such directory: /tmp/nodir/"),
            (("tree/a.txt", "app:/nope/x"), f"No such container:path: {ctr}:/nope"),
            (("app:/nope", "."), f"No such container:path: {ctr}:/nope"),
            (("app:/tmp/new", "tree/a.txt"), "cannot copy a directory to a file"),
            (("missing", "app:/tmp"), f"lstat {app.dir}/missing: no such file or directory"),
            (("app:/tmp/x", "app:/tmp/y"), "copying between services is not supported"),
            (("a", "b"), "unknown copy direction")):
        done = app.pc("cp", *args, check=False)
        assert done.returncode == 1, args
        assert message in done.stderr, (args, done.stderr)


def test_tar_streams_on_stdin_and_stdout(app):
    done = cp_bytes(app, "app:/etc/hostname", "-")
    assert done.returncode == 0, done.stderr
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert tar.getnames() == ["hostname"]
        assert tar.extractfile("hostname").read().decode().strip() == sh(app, "hostname").strip()

    stream = tar_of({"streamed": None, "streamed/x.txt": b"x\n", "top.txt": b"top\n"})
    done = cp_bytes(app, "-", "app:/tmp", data=stream)
    assert done.returncode == 0, done.stderr
    assert sh(app, "cat /tmp/streamed/x.txt /tmp/top.txt; stat -c %u /tmp/top.txt") == "x\ntop\n0\n"

    done = cp_bytes(app, "app:/tmp/streamed", "-")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert tar.getnames() == ["streamed", "streamed/x.txt"]
    done = cp_bytes(app, "-", "app:/etc/hostname", data=stream)
    assert done.returncode == 1
    assert b"must be a directory" in done.stderr


def test_a_running_containers_volume_and_tmpfs_are_copied(stack):
    stack.write(SLEEPER.replace('volumes: ["data:/vol"]', 'volumes: ["data:/vol"]\n    tmpfs: [/scratch]'))
    stack.pc("up", "-d")
    sh(stack, "echo in-volume > /vol/f && echo in-tmpfs > /scratch/t")
    stack.pc("cp", "app:/vol/f", "f")
    stack.pc("cp", "app:/scratch/t", "t")
    assert (stack.dir / "f").read_text() == "in-volume\n"
    assert (stack.dir / "t").read_text() == "in-tmpfs\n"
    (stack.dir / "g").write_text("from-host\n")
    stack.pc("cp", "g", "app:/vol/")
    volume = stack.root / "volumes" / f"{stack.project}_data" / "_data"
    assert (volume / "g").read_text() == "from-host\n"


def test_a_stopped_containers_own_files_are_copied_and_its_volumes_are_said_unreached(app):
    sh(app, "echo kept > /tmp/kept && echo in-volume > /vol/f")
    app.pc("stop", "app")
    app.pc("cp", "app:/tmp/kept", "kept")
    assert (app.dir / "kept").read_text() == "kept\n"
    (app.dir / "new").write_text("new\n")
    app.pc("cp", "new", "app:/tmp/new")
    done = app.pc("cp", "new", "app:/vol/new")
    assert "its mounts at /vol are not reached" in done.stderr
    app.pc("cp", "app:/tmp/new", "back")
    assert (app.dir / "back").read_text() == "new\n"
    volume = app.root / "volumes" / f"{app.project}_data" / "_data"
    assert sorted(p.name for p in volume.iterdir()) == ["f"]


def test_service_replicas_and_container_names(stack):
    stack.write(SLEEPER)
    stack.pc("up", "-d", "--scale", "app=2")
    (stack.dir / "f").write_text("f\n")
    stack.pc("cp", "--index", "2", "f", "app:/tmp/second")
    assert sh(stack, "ls /tmp/second 2>&1 || true").startswith("ls:")
    assert stack.pc("exec", "-T", "--index", "2", "app", "cat", "/tmp/second").stdout == "f\n"
    stack.pc("cp", "--all", "f", "app:/tmp/every")
    for index in ("1", "2"):
        assert stack.pc("exec", "-T", "--index", index, "app", "cat", "/tmp/every").stdout == "f\n"
    stack.pc("cp", f"{stack.project}-app-2:/tmp/second", "by-name")
    assert (stack.dir / "by-name").read_text() == "f\n"
    done = stack.pc("cp", "f", "nosuch:/tmp", check=False)
    assert done.returncode == 1 and "no such service: nosuch" in done.stderr
    done = stack.pc("cp", "--index", "5", "f", "app:/tmp", check=False)
    assert done.returncode == 1 and 'service "app" is not running container #5' in done.stderr


def test_a_symlink_is_copied_as_one_unless_follow_link(app):
    sh(app, "ln -s /etc/hostname /tmp/hn")
    app.pc("cp", "app:/tmp/hn", "hn")
    assert os.readlink(app.dir / "hn") == "/etc/hostname"
    app.pc("cp", "-L", "app:/tmp/hn", "hn2")
    assert (app.dir / "hn2").read_text().strip() == sh(app, "hostname").strip()
    os.symlink("hello-target", app.dir / "link")
    app.pc("cp", "link", "app:/tmp/link")
    assert sh(app, "readlink /tmp/link") == "hello-target\n"


def test_a_read_only_root_is_not_written_but_its_volume_is(stack):
    stack.write(SLEEPER.replace('volumes: ["data:/vol"]', 'volumes: ["data:/vol"]\n    read_only: true'))
    stack.pc("up", "-d")
    (stack.dir / "f").write_text("f\n")
    done = stack.pc("cp", "f", "app:/tmp/f", check=False)
    assert done.returncode == 1 and "f: Read-only file system" in done.stderr
    stack.pc("cp", "f", "app:/vol/f")
    assert sh(stack, "cat /vol/f") == "f\n"
    stack.pc("stop", "app")
    done = stack.pc("cp", "f", "app:/tmp/f", check=False)
    assert done.returncode == 1
    assert f"container rootfs is marked read-only: {stack.project}-app-1" in done.stderr
