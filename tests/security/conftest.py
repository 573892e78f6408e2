"""Attacks through the CLI and the API, as a hostile image, compose file or local user would
try them. Each test runs against a fresh machine of its own (the e2e `stack`) and checks that
nothing outside the state root changed: `canary` is a host directory no container may reach."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, busybox_archive, stack  # noqa: F401 (fixtures)


class Canary:
    """A host directory with a file in it: an attack that reaches the host reads or changes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.secret = path / "secret.txt"
        self.secret.write_text("host-only\n")

    def untouched(self) -> bool:
        return [p.name for p in self.path.iterdir()] == ["secret.txt"] and \
            self.secret.read_text() == "host-only\n"


@pytest.fixture
def canary() -> Canary:
    path = Path("/var/lib/pcompose-test") / f"canary-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    try:
        yield Canary(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
