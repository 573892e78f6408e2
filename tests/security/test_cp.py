"""`pcompose cp` against a hostile container: its symlinks (absolute or climbing out of its root)
lead to its own files and never to the host's, whether it runs or is stopped; a dir it swaps for
a symlink while a copy runs changes nothing outside; a tar stream whose members lead out is
refused; and its device nodes and set-id bits do not reach the host."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import tarfile
from pathlib import Path

HOSTILE = """
services:
  app:
    image: busybox:latest
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
{extra}"""


def sh(stack, script: str) -> str:
    return stack.pc("exec", "-T", "app", "sh", "-c", script).stdout


def fails(stack, script: str) -> bool:
    return stack.pc("exec", "-T", "app", "sh", "-c", script, check=False).returncode != 0


def cp(stack, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    """pcompose cp with binary stdin and stdout."""
    return subprocess.run(stack.argv("cp", *args), cwd=stack.dir, capture_output=True,
                          env=stack.env(), input=data, timeout=120,
                          stdin=None if data is not None else subprocess.DEVNULL)


def climb(path: Path) -> str:
    """A relative symlink target that climbs out of any root to `path`."""
    return "../" * 12 + str(path).lstrip("/")


def plant_links(stack, canary, suffix: str = "") -> None:
    """/out -> the canary, /out2 -> ../../..<canary>, and in /data a dir, a file and symlinks
    to the canary and its secret; with `suffix` on each top-level name."""
    sh(stack, f"ln -s {canary.path} /out{suffix} && ln -s {climb(canary.path)} /out2{suffix}"
              f" && mkdir -p /data{suffix}/sub && echo inside > /data{suffix}/sub/f"
              f" && ln -s {canary.path} /data{suffix}/to-host"
              f" && ln -s {climb(canary.secret)} /data{suffix}/to-secret")


def host_files(top: Path) -> dict[str, bytes]:
    """Every regular file under `top`, symlinks not followed."""
    found = {}
    for base, _, names in os.walk(top):
        for name in names:
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(top))] = path.read_bytes()
    return found


def test_writes_through_a_containers_symlinks_to_a_host_dir_never_reach_it(stack, canary):
    stack.write(HOSTILE.format(extra=""))
    stack.pc("up", "-d")
    for state in ("running", "stopped"):
        plant_links(stack, canary, f"_{state}")  # a copy that lands replaces some of them
    (stack.dir / "file").write_text("pwned\n")
    (stack.dir / "dir").mkdir()
    (stack.dir / "dir" / "secret.txt").write_text("pwned\n")
    ctr = f"{stack.project}-app-1"
    for state in ("running", "stopped"):
        s = f"_{state}"
        for dest in (f"/out{s}/x", f"/out2{s}/x", f"/out{s}/secret.txt", f"/out2{s}/secret.txt"):
            done = stack.pc("cp", "file", f"app:{dest}", check=False)
            assert done.returncode == 1, (state, dest)
            assert f"No such container:path: {ctr}:" in done.stderr
        for dest in (f"/out{s}", f"/out2{s}", f"/out{s}/", f"/out2{s}/", f"/data{s}/to-host",
                     f"/data{s}/to-secret"):
            for src in ("file", "dir", "dir/."):
                stack.pc("cp", src, f"app:{dest}", check=False)
        assert canary.untouched(), state
        stack.pc("stop", "app")


def test_reads_through_a_containers_symlinks_to_host_files_get_none_of_them(stack, canary):
    stack.write(HOSTILE.format(extra=""))
    stack.pc("up", "-d")
    plant_links(stack, canary)
    ctr = f"{stack.project}-app-1"
    for state in ("running", "stopped"):
        got = stack.dir / state
        got.mkdir()
        for src in ("/out2/secret.txt", "/out/secret.txt", "/data/to-host/secret.txt"):
            for flags in ((), ("-L",)):
                done = cp(stack, *flags, f"app:{src}", str(got / "x"))
                assert done.returncode == 1
                assert f"No such container:path: {ctr}:{src}".encode() in done.stderr
        for src in ("/out", "/out2", "/data/to-secret"):
            assert cp(stack, "-L", f"app:{src}", str(got / "followed")).returncode == 1
        assert cp(stack, "app:/out2", str(got / "link")).returncode == 0
        assert os.readlink(got / "link") == climb(canary.path)  # the symlink itself, not read
        (got / "link").unlink()  # on the host it leads to the canary: not for a test to keep
        assert cp(stack, "app:/data", str(got / "data")).returncode == 0
        assert os.readlink(got / "data" / "to-host") == str(canary.path)
        assert os.readlink(got / "data" / "to-secret") == climb(canary.secret)
        assert host_files(got) == {"data/sub/f": b"inside\n"}
        whole = cp(stack, "app:/", "-")
        assert whole.returncode == 0, whole.stderr
        assert b"host-only" not in whole.stdout
        with tarfile.open(fileobj=io.BytesIO(whole.stdout)) as tar:
            names = set(tar.getnames())
        assert {"data/sub/f", "out", "out2", "bin/busybox"} <= names
        assert not any(name.startswith(("proc/", "sys/")) for name in names)  # the kernel's views
        for base, dirs, names in os.walk(got):
            for name in dirs + names:
                path = Path(base) / name
                if path.is_symlink():
                    path.unlink()
        assert canary.untouched()
        stack.pc("stop", "app")


SWAPPER = """
i=0
while [ ! -e /stop ] && [ $i -lt 100000 ]; do
  mv /data /data.real && ln -s {target} /data && rm /data && ln -s {climb} /data && rm /data
  mv /data.real /data
  mv /data/sub /data/sub.real && ln -s {target} /data/sub && rm /data/sub && mv /data/sub.real /data/sub
  i=$((i+1))
done
touch /done
"""


def test_a_dir_swapped_for_a_symlink_while_cp_runs_leads_nowhere_on_the_host(stack, canary):
    stack.write(HOSTILE.format(extra=""))
    stack.pc("up", "-d")
    sh(stack, "mkdir -p /data/sub && echo inside > /data/sub/f")
    script = SWAPPER.format(target=canary.path, climb=climb(canary.path))
    stack.pc("exec", "-d", "app", "sh", "-c", script)
    (stack.dir / "payload.txt").write_text("pwned\n")
    (stack.dir / "tree").mkdir()
    (stack.dir / "tree" / "secret.txt").write_text("pwned\n")
    for i in range(8):
        stack.pc("cp", "payload.txt", "app:/data/", check=False)
        stack.pc("cp", "payload.txt", "app:/data/sub/secret.txt", check=False)
        stack.pc("cp", "tree/.", "app:/data/sub", check=False)
        stack.pc("cp", "app:/data/.", f"out{i}", check=False)
        stack.pc("cp", "app:/data/sub", f"sub{i}", check=False)
    assert fails(stack, "test -e /done")  # the swapping went on while every copy ran
    sh(stack, "touch /stop")
    assert canary.untouched()
    for i in range(8):
        for top in (stack.dir / f"out{i}", stack.dir / f"sub{i}"):
            # A source that was a symlink at the moment of the copy lands as that symlink, as
            # docker cp copies it (without -L): a link, not the host's files it names. Only what
            # was copied as content is looked at, so the check itself follows no link.
            if top.is_symlink() or not top.exists():
                continue
            assert b"host-only\n" not in host_files(top).values()


def tar_with(*members: tuple[str, str, str | bytes]) -> bytes:
    """A tar of (name, kind, data or link target); kind: file, dir, symlink, hardlink."""
    out = io.BytesIO()
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE}
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kinds[kind]
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data
                tar.addfile(info)
    return out.getvalue()


def test_a_tar_stream_whose_members_lead_out_is_refused(stack, canary):
    stack.write(HOSTILE.format(extra=""))
    stack.pc("up", "-d")
    inside = str(canary.path).lstrip("/")
    streams = [
        tar_with(("ok.txt", "file", b"ok\n"), ("../escape.txt", "file", b"pwned\n")),
        tar_with(("/abs.txt", "file", b"pwned\n")),
        tar_with(("ln", "symlink", "/"), ("ln/etc/evil", "file", b"pwned\n")),
        tar_with(("up", "symlink", "../" * 12), (f"up/{inside}/x", "file", b"pwned\n")),
        tar_with(("abs", "symlink", str(canary.path)), ("abs/x", "file", b"pwned\n")),
        tar_with(("hl", "hardlink", "../../etc/passwd")),
    ]
    for state in ("running", "stopped"):
        for stream in streams:
            done = cp(stack, "-", "app:/tmp", data=stream)
            assert done.returncode == 1, (state, done.stderr)
            assert b"leads outside the destination" in done.stderr
        for compress in (gzip.compress, bz2.compress, lzma.compress):
            done = cp(stack, "-", "app:/tmp", data=compress(streams[0]))
            assert b"'../escape.txt': `..` leads outside" in done.stderr
        assert canary.untouched()
        stack.pc("stop", "app")
    stack.pc("cp", "app:/tmp", "tmp")  # the members before a refused one, and no other
    assert host_files(stack.dir / "tmp") == {"ok.txt": b"ok\n"}
    for path in ("/escape.txt", "/abs.txt", "/etc/evil", f"/{inside}/x", "/tmp/hl"):
        assert cp(stack, f"app:{path}", "-").returncode == 1, path


def test_a_containers_device_nodes_and_set_id_bits_do_not_reach_the_host(stack):
    stack.write(HOSTILE.format(extra="    privileged: true\n"))
    stack.pc("up", "-d")
    sh(stack, "mkdir /tmp/d && mknod /tmp/d/disk b 8 0 && mknod /tmp/d/mem c 1 1"
              " && cp /bin/busybox /tmp/d/suid && chmod 6755 /tmp/d/suid && mkfifo /tmp/d/pipe")
    for flags in ((), ("-a",)):
        dest = stack.dir / f"d{len(flags)}"
        done = stack.pc("cp", *flags, "app:/tmp/d", str(dest))
        assert f"not copied (device files and unknown kinds): {dest.name}/disk, {dest.name}/mem" \
            in done.stderr
        assert sorted(p.name for p in dest.iterdir()) == ["pipe", "suid"]
        assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
        assert stat.S_ISFIFO((dest / "pipe").lstat().st_mode)
