"""Dockerfile features as a user of `pcompose build` sees them: a base image's ONBUILD triggers run in
the stage that uses it, COPY --parents and --link, RUN --mount=type=bind,rw."""

from __future__ import annotations

import json

from runtime import images


def _config(stack, ref: str) -> dict:
    """The image's OCI config as stored (what a push sends)."""
    store = images.Store(stack.root)
    record = store.resolve(ref)
    assert record is not None
    return json.loads(store.read_blob(record.id))["config"]


def test_onbuild_triggers_of_a_base_image_run_first_in_the_stage_that_uses_it(stack):
    stack.write("""services:
  base:
    build: ./base
    image: onbuild-base:1
  app:
    build:
      context: ./app
      additional_contexts:
        base: service:base
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
""")
    (stack.dir / "base").mkdir()
    (stack.dir / "base" / "Dockerfile").write_text(
        "FROM busybox\nONBUILD COPY greeting.txt /greeting\nONBUILD RUN echo triggered > /ran\n")
    (stack.dir / "app").mkdir()
    (stack.dir / "app" / "Dockerfile").write_text("FROM base\nRUN cat /greeting /ran > /both\n")
    (stack.dir / "app" / "greeting.txt").write_text("hello\n")
    built = stack.pc("build")
    assert "ONBUILD COPY greeting.txt /greeting" in built.stderr, built.stderr
    assert _config(stack, "onbuild-base:1")["OnBuild"] == [
        "COPY greeting.txt /greeting", "RUN echo triggered > /ran"]
    assert not _config(stack, f"{stack.project}-app").get("OnBuild")  # not inherited

    stack.pc("up", "-d", "app")
    assert stack.pc("exec", "-T", "app", "cat", "/both").stdout == "hello\ntriggered\n"

    again = stack.pc("build", "app")
    assert again.stderr.count("CACHED") == 3, again.stderr  # the triggers are cached steps too


def test_on_a_terminal_a_running_steps_output_shows_under_it_and_collapses_when_done(stack):
    stack.write("services:\n  app:\n    build: ./app\n")
    app = stack.dir / "app"
    app.mkdir()
    # The step prints, then waits for the test to have seen its output in the block (a file the
    # test makes in the context, which the step sees through its bind mount).
    (app / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=bind,target=/ctx echo waiting-for-go && i=0 && "
        "while [ ! -e /ctx/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done && echo went\n")
    proc = stack.start("--progress", "tty", "build")
    assert proc.stderr is not None
    seen = ""
    try:
        while "=> # waiting-for-go" not in seen:
            chunk = proc.stderr.read(1)
            if not chunk:
                break
            seen += chunk
    finally:
        (app / "go").touch()
        _, rest = proc.communicate(timeout=120)
    assert "=> # waiting-for-go" in seen, seen
    assert proc.returncode == 0, seen + rest
    final = (seen + rest).rsplit("\x1b[?25l", 1)[-1]  # the last drawing of the block
    assert "[+] Building 4/4" in final, final  # FROM, RUN, the export, the image
    assert "✔ #2 [app stage-0 2/2] RUN --mount" in final
    assert f"✔ Image {stack.project}-app" in final
    assert "=> #" not in final  # the step's output went with it


def test_copy_parents_copy_link_and_a_writable_bind_through_the_cli(stack):
    stack.write("services:\n  app:\n    build: ./app\n")
    app = stack.dir / "app"
    for rel, text in (("src/a/x.txt", "x\n"), ("src/b/y.txt", "y\n"), ("data.txt", "original\n")):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    (app / "Dockerfile").write_text(
        "FROM busybox\n"
        "COPY --parents src/*/*.txt /out/\n"
        "COPY --link data.txt /srv/data.txt\n"
        "RUN --mount=type=bind,target=/ctx,rw echo scribbled > /ctx/data.txt && cat /ctx/data.txt > /seen\n")
    shown = stack.pc("run", "--rm", "-T", "app", "cat", "/out/src/a/x.txt", "/out/src/b/y.txt",
                     "/srv/data.txt", "/seen")
    assert shown.stdout == "x\ny\noriginal\nscribbled\n", shown.stderr
    assert (app / "data.txt").read_text() == "original\n"  # the step's write went with its view
