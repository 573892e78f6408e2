"""The build context on a real directory: sources found as BuildKit finds them, refused when they
leave the context, and a content checksum that touch keeps and a changed byte or mode does not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime.build import context, ignore


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _ctx(root: Path, ignored: str = "") -> context.Context:
    if ignored:
        (root / ".dockerignore").write_text(ignored)
    return context.Context(root, ignore.read(root, "Dockerfile"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    _tree(ctx, {"Dockerfile": "FROM scratch\n", "app/main.c": "int main;", "app/util.c": "u",
                "app/README.md": "r", "app/sub/deep.c": "d", "docs/a.md": "a", "docs/keep.md": "k",
                "top.txt": "t", "b.txt": "b", "logs/x.log": "x", "sub/a.log": "s"})
    return ctx


def _rels(entries: list[context.Entry]) -> list[str]:
    return [e.rel for e in entries]


def test_sources_globs_per_segment_and_directories_walk(root: Path) -> None:
    ctx = _ctx(root)
    assert _rels(ctx.sources(["*.txt"])) == ["b.txt", "top.txt"]
    assert _rels(ctx.sources(["app/*.c", "top.txt", "app/main.c"])) == ["app/main.c", "app/util.c", "top.txt"]
    assert _rels(ctx.sources(["*/sub"])) == ["app/sub"]
    (app,) = ctx.sources(["./app/"])
    assert (app.rel, app.kind, app.path) == ("app", context.DIR, root / "app")
    assert _rels(list(ctx.walk(app))) == ["app/README.md", "app/main.c", "app/sub", "app/sub/deep.c", "app/util.c"]
    assert _rels(list(ctx.walk(app, excludes=["*.md", "app/sub"]))) == ["app/main.c", "app/util.c"]
    assert ctx.sources(["."])[0].kind == context.DIR


def test_dockerignore_leaves_paths_out_and_takes_back(root: Path) -> None:
    ctx = _ctx(root, "*.log\ndocs\n!docs/keep.md\n")
    (root / "root.log").write_text("l")
    assert _rels(ctx.sources(["*/*.log"])) == ["logs/x.log", "sub/a.log"]  # *.log is anchored at the root
    with pytest.raises(context.ContextError, match="not found"):
        ctx.sources(["*.log"])
    with pytest.raises(context.ContextError, match="docs/a.md"):
        ctx.sources(["docs/a.md"])
    (docs,) = ctx.sources(["docs"])
    assert _rels(list(ctx.walk(docs))) == ["docs/keep.md"]
    (top,) = ctx.sources(["."])
    walked = _rels(list(ctx.walk(top)))
    assert "docs" in walked and "docs/keep.md" in walked and "docs/a.md" not in walked


def test_left_out_skips_ignored_files_even_when_an_exception_has_wildcards(root: Path) -> None:
    ctx = _ctx(root, "logs\n*/*.log\ndocs\n!docs/*.md\n")
    assert ctx.left_out("sub/a.log", is_dir=False)
    assert ctx.left_out("logs", is_dir=True) is False  # `!docs/*.md` has a wildcard: look inside
    assert ctx.left_out("logs/x.log", is_dir=False)
    assert not ctx.left_out("docs/a.md", is_dir=False)
    assert not ctx.left_out("app/main.c", is_dir=False)
    assert ctx.left_out("app/main.c", is_dir=False) == ctx.excluded("app/main.c")


def test_missing_and_escaping_sources_are_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host file")
    os.symlink("../secret", root / "up")
    os.symlink(str(tmp_path / "secret"), root / "abs")
    os.symlink("app/main.c", root / "inside")
    ctx = _ctx(root)
    for source in ["../secret", "app/../../secret", "up", "abs"]:
        with pytest.raises(context.ContextError, match="outside the build context") as caught:
            ctx.sources([source])
        assert source in str(caught.value)
    with pytest.raises(context.ContextError, match="nothing.txt: not found"):
        ctx.sources(["nothing.txt"])
    with pytest.raises(context.ContextError, match=r"\*.nope: not found"):
        ctx.sources(["*.nope"])
    (inside,) = ctx.sources(["inside"])
    assert (inside.kind, inside.path) == (context.FILE, root / "app" / "main.c")


def test_checksum_follows_content_mode_and_owner_not_mtime(root: Path) -> None:
    ctx = _ctx(root, "logs\n")
    first = ctx.checksum(["app", "top.txt"])
    old = time.time() - 1000
    os.utime(root / "app" / "main.c", (old, old))  # touch alone
    assert context.Context(root, ignore.read(root, "Dockerfile")).checksum(["app", "top.txt"]) == first
    assert ctx.checksum(["app", "top.txt"]) == first
    (root / "logs" / "x.log").write_text("ignored file changed")
    assert ctx.checksum(["."]) == ctx.checksum(["."])
    whole = ctx.checksum(["."])
    (root / "logs" / "x.log").write_text("ignored again")
    assert ctx.checksum(["."]) == whole

    (root / "app" / "main.c").write_text("int main;!")  # one byte more
    changed = ctx.checksum(["app", "top.txt"])
    assert changed != first
    (root / "app" / "main.c").write_text("int main;")
    assert ctx.checksum(["app", "top.txt"]) == first
    os.chmod(root / "app" / "main.c", 0o755)
    assert ctx.checksum(["app", "top.txt"]) != first
    os.chmod(root / "app" / "main.c", 0o644)
    os.chown(root / "top.txt", 1000, 1000)
    assert ctx.checksum(["app", "top.txt"]) != first
    os.chown(root / "top.txt", 0, 0)
    os.rename(root / "app" / "util.c", root / "app" / "util2.c")
    assert ctx.checksum(["app", "top.txt"]) != first


def test_checksum_of_a_symlink_is_its_target(root: Path) -> None:
    os.symlink("main.c", root / "app" / "link")
    ctx = _ctx(root)
    before = ctx.checksum(["app"])
    os.remove(root / "app" / "link")
    os.symlink("util.c", root / "app" / "link")
    assert ctx.checksum(["app"]) != before


def test_ignored_trees_are_not_walked(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(root, "logs\n")
    seen: list[str] = []
    real_scandir = os.scandir

    def spy(path: Path) -> object:
        seen.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    ctx.checksum(["."])
    assert seen and not any(p.endswith("/logs") for p in seen)


def test_warm_checksum_is_fast(tmp_path: Path) -> None:
    root = tmp_path / "big"
    block = os.urandom(4096)
    for i in range(500):
        sub = root / f"d{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(block)
    (root / "blob").write_bytes(os.urandom(8 << 20))
    ctx = context.Context(root, ignore.Matcher([]))
    cold = ctx.checksum(["."])
    started = time.perf_counter()
    warm = ctx.checksum(["."])
    elapsed = time.perf_counter() - started
    assert warm == cold
    assert elapsed < 0.1, f"warm checksum took {elapsed * 1000:.0f} ms"
