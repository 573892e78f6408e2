"""RUN under runc in an overlay snapshot: output streamed, its changes (none of runc's) in the layer."""

from __future__ import annotations

import io
import tarfile

import pytest

from runtime.build import snapshot


def _names(store, digest: str) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(digest))) as tar:
        return set(tar.getnames())


def _sh(script: str, **kw) -> snapshot.Run:
    return snapshot.Run(argv=("/bin/sh", "-c", script), **kw)


def test_run_changes_become_the_layer_without_runs_artefacts(where, base, store):
    lines: list[str] = []
    with snapshot.Snapshot(where, (base,)) as snap:
        snap.run(_sh("echo made > /made; rm /etc/group; echo out; echo err >&2; cat /etc/hosts >/dev/null"),
                 lines.append)
        committed = snap.commit()
    assert sorted(lines) == ["err", "out"]  # one pipe for both; the shell flushes as it likes
    assert committed is not None
    made, _ = committed
    names = _names(store, made.digest)
    assert "made" in names and "etc/.wh.group" in names
    for artefact in ("etc/hosts", "etc/resolv.conf", "etc/hostname"):
        assert artefact not in names


def test_run_sees_the_stages_env_user_and_workdir(where, base):
    lines: list[str] = []
    with snapshot.Snapshot(where, (base,)) as snap:
        snap.run(_sh('echo "$GREETING $(id -u) $(pwd)"', env=("GREETING=hi",), user="app",
                     workdir="/home/app"),
                 lines.append)
    assert lines == ["hi 1000 /home/app"]


def test_network_none_has_only_loopback(where, base):
    lines: list[str] = []
    with snapshot.Snapshot(where, (base,)) as snap:
        snap.run(_sh("ls /sys/class/net"), lines.append)
    assert lines == ["lo"]


def test_mounts_are_there_during_run_and_not_in_the_layer(where, base, store, tmp_path):
    src = tmp_path / "ctx"
    src.mkdir()
    (src / "input").write_text("from the context\n")
    lines: list[str] = []
    with snapshot.Snapshot(where, (base,)) as snap:
        mounts = (snapshot.Mount("/src", str(src)), snapshot.Mount("/scratch", type="tmpfs", read_only=False))
        snap.run(_sh("cat /src/input; echo x > /scratch/y; cp /src/input /copied", mounts=mounts),
                 lines.append)
        committed = snap.commit()
    assert lines == ["from the context"]
    assert committed is not None
    made, _ = committed
    names = _names(store, made.digest)
    assert names == {"copied"}


def test_a_failing_run_says_its_exit_code_and_last_lines(where, base):
    with snapshot.Snapshot(where, (base,)) as snap, pytest.raises(snapshot.RunFailed) as failed:
        snap.run(_sh("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; exit 3"), lambda line: None)
    assert failed.value.exit_code == 3
    assert failed.value.tail[-1] == "line12" and "line1" not in failed.value.tail
    assert "exit code: 3" in str(failed.value) and "line12" in str(failed.value)


def test_sweep_removes_what_a_killed_builder_left(where, base):
    snap = snapshot.Snapshot(where, (base,)).__enter__()  # never left: as if the builder died here
    assert (snap.merged / "bin").is_dir()
    assert snapshot.sweep(where) == [f"step root {snap.base.name}"]
    assert not snap.base.exists()
