"""Compose `build:` through the CLI: `up` builds what is missing and runs it, `build` shows docker's steps and
the cache, a changed source rebuilt with `up --build` recreates the container, a failed build says why."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from tests.support import oci_image, registry

COMPOSE = """services:
  web:
    build:
      context: ./app
      args:
        GREETING: hello
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""

DOCKERFILE = """FROM busybox AS page
ARG GREETING
COPY page.txt /src/page.txt
RUN echo "$GREETING $(cat /src/page.txt)" > /src/index.html

FROM busybox
COPY --from=page /src/index.html /www/index.html
ENV SERVED_BY=pcompose
"""


def _container(stack, service: str) -> dict:
    rows = [json.loads(line) for line in stack.pc("ps", "--format", "json").stdout.splitlines()]
    return next(r for r in rows if r["Service"] == service)


def _write_app(stack, page: str) -> None:
    app = stack.dir / "app"
    app.mkdir(exist_ok=True)
    (app / "Dockerfile").write_text(DOCKERFILE)
    (app / "page.txt").write_text(page)


def test_up_builds_the_missing_image_and_runs_it_and_up_build_recreates(stack):
    stack.write(COMPOSE)
    _write_app(stack, "world\n")
    up = stack.pc("up", "-d")
    assert "[web page 4/4] RUN" in up.stderr or "RUN echo" in up.stderr, up.stderr
    assert stack.pc("exec", "-T", "web", "cat", "/www/index.html").stdout == "hello world\n"
    assert stack.pc("exec", "-T", "web", "sh", "-c", "echo $SERVED_BY").stdout == "pcompose\n"
    assert f"{stack.project}-web" in stack.pc("images").stdout
    first = _container(stack, "web")["ID"]

    again = stack.pc("up", "-d")  # the image is there: nothing is built, nothing recreated
    assert "RUN" not in again.stderr
    assert _container(stack, "web")["ID"] == first

    cached = stack.pc("build", "web")
    assert cached.stderr.count("CACHED") >= 3, cached.stderr
    rows = [json.loads(line) for line in stack.pc("system", "df", "--format", "json").stdout.splitlines()]
    build_cache = next(r for r in rows if r["Type"] == "Build Cache")
    assert int(build_cache["TotalCount"]) >= 3  # the steps the cache keeps
    stack.pc("up", "-d")  # every step cached: the same image, so the container stays
    assert _container(stack, "web")["ID"] == first

    (stack.dir / "app" / "page.txt").write_text("again\n")
    stack.pc("up", "-d", "--build")
    assert stack.pc("exec", "-T", "web", "cat", "/www/index.html").stdout == "hello again\n"
    assert _container(stack, "web")["ID"] != first


def test_build_arg_and_failure_through_the_cli(stack):
    stack.write(COMPOSE)
    _write_app(stack, "world\n")
    stack.pc("build", "--build-arg", "GREETING=howdy")
    stack.pc("up", "-d")
    assert stack.pc("exec", "-T", "web", "cat", "/www/index.html").stdout == "howdy world\n"
    (stack.dir / "app" / "Dockerfile").write_text("FROM busybox\nRUN echo broken >&2; exit 3\n")
    (stack.dir / "other").mkdir()
    (stack.dir / "other" / "Dockerfile").write_text("FROM busybox\nRUN echo fine > /fine\n")
    stack.write(COMPOSE + "  other:\n    build: ./other\n    command: [\"sleep\", \"100000\"]\n")
    failed = stack.pc("build", check=False)
    assert failed.returncode != 0
    assert "Dockerfile:2" in failed.stderr and "exit code: 3" in failed.stderr and "broken" in failed.stderr
    assert f"{stack.project}-other" in stack.pc("images").stdout  # the other build went on


def test_a_remote_context_and_another_platform_are_refused(stack):
    stack.write("services:\n  web:\n    build: https://example.com/repo.git\n")
    refused = stack.pc("build", check=False)
    assert refused.returncode != 0 and "remote" in refused.stderr
    stack.write("services:\n  web:\n    build: .\n    platform: linux/s390x\n")
    refused = stack.pc("build", check=False)
    assert refused.returncode != 0 and "platform" in refused.stderr


def test_a_service_context_orders_the_builds(stack):
    stack.write("""services:
  base:
    build: ./base
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
  app:
    build:
      context: ./app
      additional_contexts:
        base: service:base
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
""")
    for name, dockerfile in (("base", "FROM busybox\nRUN echo made-by-base > /marker\n"),
                             ("app", "FROM base\nRUN cat /marker > /from-base\n")):
        (stack.dir / name).mkdir()
        (stack.dir / name / "Dockerfile").write_text(dockerfile)
    built = stack.pc("build")
    order = [line for line in built.stderr.splitlines() if "exporting to image" in line]
    assert [line.split("[")[1].split("]")[0] for line in order] == ["base", "app"], built.stderr
    stack.pc("up", "-d")
    assert stack.pc("exec", "-T", "app", "cat", "/from-base").stdout == "made-by-base\n"


def test_the_build_example_builds_and_serves(stack):
    example = Path(__file__).resolve().parents[2] / "specs" / "examples" / "build"
    shutil.copytree(example, stack.dir / "example")
    compose = str(stack.dir / "example" / "compose.yaml")
    stack.pc("-f", compose, "up", "-d", "--wait", timeout=300)
    page = stack.pc("-f", compose, "exec", "-T", "web", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").stdout
    assert "<h1>Built by pcompose</h1>" in page
    owner = stack.pc("-f", compose, "exec", "-T", "web", "stat", "-c", "%U", "/srv/www/index.html").stdout
    assert owner == "nobody\n"
    again = stack.pc("-f", compose, "build")
    assert again.stderr.count("CACHED") == 5, again.stderr
    stack.pc("-f", compose, "down", "-v", "-t", "0")


def test_a_base_image_missing_here_is_pulled_by_the_build(stack, tmp_path):
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running(work) as reg:
            layout = tmp_path / "layout"
            oci_image.write_layout(layout, [oci_image.busybox_layer()], "1.0")
            reg.push(layout, "1.0", "base/busybox:1.0")
            stack.write("services:\n  web:\n    build: ./app\n    command: [\"sleep\", \"100000\"]\n"
                        "    stop_signal: SIGKILL\n")
            (stack.dir / "app").mkdir()
            (stack.dir / "app" / "Dockerfile").write_text(
                f"FROM {reg.host}/base/busybox:1.0\nRUN echo pulled-base > /seen\n")
            stack.pc("up", "-d")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert stack.pc("exec", "-T", "web", "cat", "/seen").stdout == "pulled-base\n"
    assert "base/busybox" in stack.pc("images").stdout
