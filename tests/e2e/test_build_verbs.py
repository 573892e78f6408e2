"""Builds by the verbs other than `build` and `up`: `create` and `run` build what is missing (as docker
compose does), `--build` builds again, `create --no-build` builds nothing."""

from __future__ import annotations

import json

from tests.e2e import test_build


def _ids(stack) -> list[str]:
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout.splitlines()]
    return [r["ID"] for r in rows if r["Service"] == "web"]


def test_create_builds_what_is_missing_and_build_or_no_build_as_asked(stack):
    stack.write(test_build.COMPOSE)
    test_build._write_app(stack, "world\n")
    made = stack.pc("create")
    assert "RUN echo" in made.stderr, made.stderr
    assert f"{stack.project}-web" in stack.pc("images").stdout
    first = _ids(stack)
    assert len(first) == 1

    (stack.dir / "app" / "page.txt").write_text("again\n")
    kept = stack.pc("create", "--no-build")
    assert "RUN" not in kept.stderr and "CACHED" not in kept.stderr, kept.stderr
    assert _ids(stack) == first  # the same image: nothing to recreate

    refused = stack.pc("create", "--build", "--no-build", check=False)
    assert refused.returncode != 0 and "incompatible" in refused.stderr

    rebuilt = stack.pc("create", "--build")
    assert "RUN echo" in rebuilt.stderr, rebuilt.stderr
    assert _ids(stack) != first  # a new image: the created container is made again from it
    stack.pc("start", "web")
    assert stack.pc("exec", "-T", "web", "cat", "/www/index.html").stdout == "hello again\n"


def test_run_builds_the_missing_image_and_run_build_builds_again(stack):
    stack.write(test_build.COMPOSE)
    test_build._write_app(stack, "world\n")
    first = stack.pc("run", "--rm", "-T", "web", "cat", "/www/index.html")
    assert first.stdout == "hello world\n"
    assert "RUN echo" in first.stderr, first.stderr

    (stack.dir / "app" / "page.txt").write_text("again\n")
    present = stack.pc("run", "--rm", "-T", "web", "cat", "/www/index.html")
    assert present.stdout == "hello world\n"  # the image is there: run builds nothing
    assert "RUN" not in present.stderr, present.stderr

    again = stack.pc("run", "--build", "--rm", "-T", "web", "cat", "/www/index.html")
    assert again.stdout == "hello again\n"
    assert "RUN echo" in again.stderr, again.stderr
