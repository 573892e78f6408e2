"""A run that lacks what its tests need fails at once and says what is missing, instead of
skipping those tests into a green result that proved nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_run(*args: str, user: int | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*as_user, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


@pytest.mark.root
def test_a_run_without_root_fails_naming_the_tests_that_need_it():
    done = pytest_run("tests/unit/test_statefiles.py", user=65534)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "missing:" in done.stderr and "root (" in done.stderr
    assert "test_tighten_takes_a_dir_another_user_made" in done.stderr
    assert "passed" not in done.stdout and "skipped" not in done.stdout


def test_a_run_without_the_shared_fixtures_fails_naming_them(tmp_path):
    done = pytest_run("tests/unit/spec/test_fixtures.py",
                      env={"PCOMPOSE_TEST_SHARED": str(tmp_path / "shared")})
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert f"{tmp_path}/shared/compose-fixtures" in done.stderr
    assert "passed" not in done.stdout and "skipped" not in done.stdout


def test_a_run_that_needs_neither_runs():
    done = pytest_run("tests/unit/test_safepath.py", user=65534 if os.geteuid() == 0 else None,
                      env={"PCOMPOSE_TEST_SHARED": "/nonexistent"})
    assert done.returncode == 0, done.stdout + done.stderr
