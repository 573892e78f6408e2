"""Write small stacks into a temporary directory and load them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler import spec


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(directory: Path, text: str, environ=None, **kwargs) -> spec.Project:
    path = write(directory, "compose.yaml", text)
    return spec.load([path], environ=environ or {}, **kwargs)
