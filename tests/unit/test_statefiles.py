"""Private dirs and whole-file writes under the state root (runtime.statefiles)."""

from __future__ import annotations

import os

import pytest

from runtime import statefiles


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return path.stat().st_mode & 0o7777


def test_a_private_dir_is_made_0700_and_an_existing_one_is_left_alone(tmp_path):
    made = statefiles.private_dir(tmp_path / "a" / "root")
    assert mode(made) == 0o700
    os.chmod(made, 0o755)
    statefiles.private_dir(made)
    assert mode(made) == 0o755


def test_tighten_narrows_an_existing_dir_and_says_what_it_was(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    assert statefiles.tighten(root) == f"0755 {os.geteuid()}:{os.getegid()}"
    assert mode(root) == 0o700
    assert statefiles.tighten(root) is None


@pytest.mark.root
def test_tighten_takes_a_dir_another_user_made(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.chown(root, 65534, 65534)
    statefiles.tighten(root)
    st = root.stat()
    assert (st.st_uid, st.st_gid, mode(root)) == (0, 0, 0o700)


def test_write_replaces_whole_with_the_mode_asked(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    statefiles.write(target, '{"env": "secret"}')
    assert (target.read_text(), mode(target)) == ('{"env": "secret"}', 0o600)
    statefiles.write(tmp_path / "hosts", b"127.0.0.1 localhost\n", mode=0o644)
    assert mode(tmp_path / "hosts") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "hosts"]


def test_open_private_narrows_a_log_kept_from_before(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text("before\n")
    os.chmod(log, 0o644)
    with open(statefiles.open_private(log), "ab") as out:
        out.write(b"after\n")
    assert (log.read_text(), mode(log)) == ("before\nafter\n", 0o600)


def test_a_file_in_the_place_of_a_dir_is_an_error_and_keeps_its_mode(tmp_path):
    taken = tmp_path / "run"
    taken.write_text("not a dir")
    with pytest.raises(FileExistsError):
        statefiles.tighten(taken)
    assert mode(taken) == 0o644


def test_a_synced_write_is_whole_and_leaves_no_temp_beside_it(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "refs.json"
    statefiles.write(target, '{"a": 1}', sync=True)
    statefiles.write(target, '{"a": 2}', sync=True)
    assert target.read_text() == '{"a": 2}' and mode(target) == 0o600
    assert len(synced) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["refs.json"]
