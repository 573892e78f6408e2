"""RUN --mount=type=bind,rw (writes discarded), COPY --parents and COPY --link, on the real primitives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.build import builder, snapshot
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


def test_copy_parents_keeps_each_sources_path_or_what_follows_its_pivot(where, store, ctx, busybox):  # noqa: F811
    for rel in ("src/a/x.txt", "src/b/y.txt", "src/b/deep/z.txt", "lib/one/two/w.txt"):
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(rel + "\n")
    _build(where, ctx, """
        FROM busybox AS files
        COPY --parents src/*/*.txt lib/./one/two /out/
        FROM busybox
        COPY --parents --from=files /out/./src/b/y.txt /again/
        """, tags=("parents:1",))
    record = store.resolve("parents:1")
    assert record is not None
    assert _read(where, store, "parents:1", "/again/src/b/y.txt") == "src/b/y.txt\n"
    _build(where, ctx, "FROM busybox\nCOPY --parents src/*/*.txt lib/./one/two /out/\n", tags=("parents:2",))
    assert _read(where, store, "parents:2", "/out/src/a/x.txt") == "src/a/x.txt\n"
    assert _read(where, store, "parents:2", "/out/src/b/y.txt") == "src/b/y.txt\n"
    assert _read(where, store, "parents:2", "/out/src/b/deep/z.txt") is None  # not matched by the glob
    assert _read(where, store, "parents:2", "/out/one/two/w.txt") == "lib/one/two/w.txt\n"
    assert _read(where, store, "parents:2", "/out/lib/one/two/w.txt") is None


def test_copy_link_makes_a_layer_a_changed_base_takes_again(where, store, ctx, busybox):  # noqa: F811
    (ctx / "app.txt").write_text("app\n")
    dockerfile = """
        FROM busybox
        ARG BASE=1
        RUN echo $BASE > /base
        COPY --link --chown=1000:1000 app.txt /srv/app/app.txt
        RUN cat /base /srv/app/app.txt > /both
        """
    _build(where, ctx, dockerfile, args=(("BASE", "1"),), tags=("link:1",))
    _build(where, ctx, dockerfile, args=(("BASE", "2"),), tags=("link:2",))
    one, two = store.resolve("link:1"), store.resolve("link:2")
    assert one is not None and two is not None
    # the RUN below changed, the linked layer is the same blob on top of the new one
    assert one.layers[1].digest != two.layers[1].digest
    assert one.layers[2].digest == two.layers[2].digest
    assert _read(where, store, "link:2", "/both") == "2\napp\n"
    assert _read(where, store, "link:1", "/both") == "1\napp\n"
    with snapshot.Snapshot(where, two.chain_ids) as snap:
        st = (snap.merged / "srv/app/app.txt").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert (snap.merged / "bin/busybox").exists()  # what is below is still there


def test_copy_from_a_stage_is_keyed_by_the_files_it_takes(where, store, ctx, busybox):  # noqa: F811
    dockerfile = """
        FROM busybox AS gen
        ARG N=1
        ARG OUT=same
        RUN echo $N > /n && echo $OUT > /out
        FROM busybox
        COPY --from=gen /out /out
        RUN cat /out > /copied
        """
    first, _ = _build(where, ctx, dockerfile, args=(("N", "1"),), tags=("from:1",))
    assert (first.cached_steps, first.run_steps) == (0, 3)
    # the stage runs again and makes the same /out: what copies it and follows stays cached
    same, _ = _build(where, ctx, dockerfile, args=(("N", "2"),), tags=("from:2",))
    assert (same.cached_steps, same.run_steps) == (2, 1)
    assert same.image_id == first.image_id
    other, _ = _build(where, ctx, dockerfile, args=(("N", "2"), ("OUT", "changed")), tags=("from:3",))
    assert (other.cached_steps, other.run_steps) == (0, 3)
    assert _read(where, store, "from:3", "/copied") == "changed\n"
