"""RUN --mount=type=bind,rw (writes discarded), COPY --parents and COPY --link, on the real primitives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.build import builder
from tests.linux.build.test_builder import _read, busybox  # noqa: F401  (a fixture)


@pytest.fixture
def ctx(tmp_path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    return path


def _build(where, ctx: Path, dockerfile: str, **kw) -> tuple[builder.Result, list[str]]:
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    lines: list[str] = []
    return builder.build(where, builder.Request(context=ctx, **kw), lines.append), lines


def test_a_writable_bind_takes_the_steps_writes_and_drops_them(where, store, ctx, busybox):  # noqa: F811
    (ctx / "data.txt").write_text("original\n")
    result, _ = _build(where, ctx, """
        FROM busybox AS other
        RUN echo kept > /kept
        FROM busybox
        RUN --mount=type=bind,target=/ctx,rw \\
            echo scribbled > /ctx/data.txt && touch /ctx/new && cat /ctx/data.txt > /seen
        RUN --mount=type=bind,source=data.txt,target=/one.txt,readwrite \\
            echo more >> /one.txt && cat /one.txt > /seen-file
        RUN --mount=type=bind,target=/ctx ! touch /ctx/refused 2>/dev/null && echo read-only > /ro
        RUN --mount=type=bind,from=other,target=/o,rw rm /o/kept && echo gone >/o/new && cat /o/new >/sg
        RUN --mount=type=bind,from=other,target=/o cat /o/kept > /still
        """, tags=("rw:1",))
    assert _read(where, store, "rw:1", "/seen") == "scribbled\n"
    assert _read(where, store, "rw:1", "/seen-file") == "original\nmore\n"
    assert _read(where, store, "rw:1", "/ro") == "read-only\n"  # without rw a bind stays read-only
    assert (ctx / "data.txt").read_text() == "original\n" and not (ctx / "new").exists()
    assert _read(where, store, "rw:1", "/ctx/data.txt") is None  # nothing of the mount in the image
    assert _read(where, store, "rw:1", "/one.txt") is None
    assert _read(where, store, "rw:1", "/sg") == "gone\n"
    assert _read(where, store, "rw:1", "/still") == "kept\n"  # the stage itself was not written
    assert result.image_id
