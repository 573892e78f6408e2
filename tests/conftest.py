"""Fixtures shared by every test layer: unique names and scratch state roots that are always removed."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support import shared


@pytest.fixture
def unique() -> str:
    """A short name unique to this test run, safe for links (15 bytes) and cgroup paths."""
    return "t" + uuid.uuid4().hex[:7]


@pytest.fixture
def state_root(unique: str) -> Path:
    """A state root on the host's ext4 (overlay upper dirs and whiteouts need a real fs)."""
    root = Path("/var/lib/pcompose-test") / unique
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_dir(unique: str) -> Path:
    path = Path("/run/pcompose-test") / unique
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


PRIVILEGED = ("linux", "e2e", "cluster", "security")


def pytest_collection_modifyitems(config, items):
    """Tests under tests/linux, tests/e2e, tests/security and tests/cluster need root and the
    real primitives; a test that needs what this run lacks stops the whole run, with what is
    missing, rather than being skipped into a green result that proved nothing."""
    for item in items:
        if any(p in PRIVILEGED for p in Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.linux)
            item.add_marker(pytest.mark.root)
    missing = []
    needs_root = [item.nodeid for item in items if item.get_closest_marker("root")]
    if needs_root and os.geteuid() != 0:
        missing.append(f"root ({len(needs_root)} tests drive namespaces, mounts, cgroups, runc "
                       f"or file ownership, e.g. {needs_root[0]})")
    needs_shared = [item.nodeid for item in items if item.get_closest_marker("shared")]
    for path in (shared.COMPOSE_FIXTURES, shared.SCHEMA):
        if needs_shared and not path.exists():
            missing.append(f"{path} (the shared material beside the checkout, ../shared; "
                           f"needed by {needs_shared[0]} and {len(needs_shared) - 1} more)")
    if missing:
        raise pytest.UsageError("this run cannot prove what its tests claim; missing:\n  "
                                + "\n  ".join(missing))


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """A verb or the agent under test may configure structlog onto pytest's captured stream,
    which is closed after the test: put the defaults back so the next test logs safely."""
    import structlog

    yield
    structlog.reset_defaults()
