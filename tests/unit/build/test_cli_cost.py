"""`pcompose build` pays only for the standard library and the agent's plain client: a warm build is
mostly the agent's work, not the CLI's imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_build_imports_neither_structlog_nor_the_loader_nor_aiohttp():
    # the agent's part is stubbed out: what is measured is what the CLI itself imports
    code = ("import sys; from reconciler import cli; from reconciler.cli import build, compose_up; "
            "compose_up.ensure_agent_now = lambda args: None; build.run = lambda *a, **k: []; "
            "cli.main(['build', '-q']); "
            "print(sorted(m for m in ('structlog', 'rich', 'pydantic', 'aiohttp', 'asyncio', "
            "'reconciler.spec', 'runtime.build') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout == "[]\n"
