"""The store's file: private modes for it and SQLite's files beside it, a check of its pages,
and the copy of the last good one that a damaged store's message points to."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from reconciler.agent import store


def record(name: str) -> store.ProjectRecord:
    return store.ProjectRecord(name, '{"services": {"web": {"environment": {"PW": "s3cret"}}}}')


def corrupt_page(path: Path, page: int) -> None:
    """Garbage over one page of a database file (page 1 is the header and schema)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xff" * size)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_database_and_its_wal_and_shm_are_0600(tmp_path, umask_022):
    st = store.Store(tmp_path / "root")
    st.put(record("shop"))
    files = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "root").iterdir()}
    st.close()
    assert files == {"desired.db": 0o600, "desired.db-wal": 0o600, "desired.db-shm": 0o600}
    assert (tmp_path / "root").stat().st_mode & 0o777 == 0o700


def test_wider_files_of_an_older_version_are_narrowed_when_opened(tmp_path, umask_022):
    root = tmp_path / "root"
    store.Store(root).close()
    for name in ("desired.db", "desired.db-wal", "desired.db-shm"):
        (root / name).touch()
        os.chmod(root / name, 0o644)
    st = store.Store(root)
    modes = {p.name: p.stat().st_mode & 0o777 for p in root.iterdir()}
    st.close()
    assert modes == {"desired.db": 0o600, "desired.db-wal": 0o600, "desired.db-shm": 0o600}


def test_a_sound_store_passes_and_its_copy_holds_the_same_projects(tmp_path):
    st = store.Store(tmp_path)
    st.put(record("shop"))
    st.check()
    backup = st.back_up()
    st.close()
    assert backup == tmp_path / "desired.db.bak"
    assert backup.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT name FROM projects").fetchall() == [("shop",)]
    copy.close()


def test_damaged_pages_fail_the_check_with_the_path_of_the_last_good_copy(tmp_path):
    st = store.Store(tmp_path)
    for n in range(50):  # a few pages of rows
        st.put(record(f"p{n:02}" + "x" * 200))
    st.back_up()
    st.close()
    corrupt_page(tmp_path / "desired.db", 2)
    st = store.Store(tmp_path)  # the schema on page 1 still reads
    with pytest.raises(store.Damaged) as caught:
        st.check()
    st.close()
    message = str(caught.value)
    assert f"{tmp_path / 'desired.db'} is damaged (quick_check:" in message
    assert f"cp {tmp_path / 'desired.db.bak'} {tmp_path / 'desired.db'}" in message
    assert "\n" not in message


def test_a_damaged_header_is_damaged_too_and_says_when_there_is_no_copy(tmp_path):
    store.Store(tmp_path).close()
    corrupt_page(tmp_path / "desired.db", 1)
    with pytest.raises(store.Damaged) as caught:
        store.Store(tmp_path)
    assert "there is no copy to go back to" in str(caught.value)
