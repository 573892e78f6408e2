"""docker cp's rules, decided without touching a file: how an argument names a container or a
local path, and where a source lands at a destination."""

from __future__ import annotations

import pytest

from reconciler.cli import compose_cp
from runtime import cp

DIR, FILE, MISSING = cp.PathInfo(True, True), cp.PathInfo(True, False), cp.PathInfo(False)


@pytest.mark.parametrize("arg, split", [
    ("web:/etc/hosts", ("web", "/etc/hosts")),
    ("web:etc", ("web", "etc")),
    ("/abs/a:b", ("", "/abs/a:b")),
    ("./file:name", ("", "./file:name")),
    ("plain", ("", "plain")),
    ("-", ("", "-")),
    ("proj-web-1:/x:y", ("proj-web-1", "/x:y")),
])
def test_an_argument_names_a_container_or_a_local_path(arg, split):
    assert compose_cp.split(arg) == split


def test_container_paths_are_from_the_root_and_keep_their_trailing_markers():
    assert compose_cp.container_path("tmp/x") == "/tmp/x"
    assert compose_cp.container_path("/tmp/x/.") == "/tmp/x/."
    assert compose_cp.container_path("tmp/") == "/tmp/"


@pytest.mark.parametrize("src, src_dir, dest, found, placed", [
    ("a.txt", False, "/tmp", DIR, ("/tmp", "a.txt")),              # into an existing dir
    ("d", True, "/tmp", DIR, ("/tmp", "d")),
    ("d/", True, "/tmp", DIR, ("/tmp", "d")),                       # d/ is still the dir
    ("d/.", True, "/tmp", DIR, ("/tmp", ".")),                      # its contents
    (".", True, "/tmp", DIR, ("/tmp", ".")),
    ("a.txt", False, "/tmp/b.txt", FILE, ("/tmp", "b.txt")),       # over an existing file
    ("a.txt", False, "/tmp/new", MISSING, ("/tmp", "new")),        # made under DEST's name
    ("d", True, "/tmp/new", MISSING, ("/tmp", "new")),
    ("d/.", True, "/tmp/new/", MISSING, ("/tmp", "new")),
    ("/", True, "out", MISSING, (".", "out")),
])
def test_where_a_source_lands(src, src_dir, dest, found, placed):
    assert cp.place(src, src_dir, dest, found) == cp.Placement(*placed)


@pytest.mark.parametrize("src_dir, dest, found, message", [
    (True, "/etc/hostname", FILE, "cannot copy a directory to a file"),
    (False, "/etc/hostname/", FILE, "not a directory"),
    (False, "/tmp/nodir/", MISSING, "no such directory"),
])
def test_what_cannot_land(src_dir, dest, found, message):
    with pytest.raises(cp.CopyError, match=message):
        cp.place("src", src_dir, dest, found)
