"""Fixtures shared by every test layer: unique names and scratch state roots that are always removed."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest


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


def pytest_collection_modifyitems(config, items):
    """Tests under tests/linux, tests/e2e, tests/security and tests/cluster need root and the real primitives."""
    is_root = os.geteuid() == 0
    for item in items:
        parts = Path(str(item.fspath)).parts
        if any(p in parts for p in ("linux", "e2e", "cluster", "security")):
            item.add_marker(pytest.mark.linux)
            if not is_root:
                item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """A verb or the agent under test may configure structlog onto pytest's captured stream,
    which is closed after the test: put the defaults back so the next test logs safely."""
    import structlog

    yield
    structlog.reset_defaults()
