"""The packages are type-clean under mypy and lint-clean under ruff, as pyproject.toml configures them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["reconciler", "controllers", "runtime"]


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name(name)
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run ./scripts/install.sh (it installs the test extras)")
    return subprocess.run([str(tool), *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.timeout(600)
def test_mypy_finds_no_errors():
    # The packages come from [tool.mypy]; its cache keeps a second run short.
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing():
    result = run_tool("ruff", "check", "--no-fix", "--output-format", "concise", *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
