"""Dockerfile builds on the real primitives: stages, cache hits and misses, build args, whiteouts, errors."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
from pathlib import Path

import pytest

from runtime.build import builder, image, snapshot
from runtime.images import gc


@pytest.fixture
def busybox(store, base, busybox_layer) -> str:
    """busybox:latest in the store, as the README's set-up makes it."""
    layer = image.LayerRef(busybox_layer.digest, busybox_layer.diff_id,
                           "application/vnd.oci.image.layer.v1.tar+gzip", len(busybox_layer.blob))
    image.write(store, {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                        "Cmd": ["sh"]}, (layer,), [{"created_by": "busybox"}], ["busybox:latest"])
    return "busybox:latest"


@pytest.fixture
def ctx(tmp_path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    return path


class Built:
    def __init__(self, result: builder.Result, lines: list[str]) -> None:
        self.result, self.lines = result, lines

    def cached(self) -> int:
        return sum(1 for line in self.lines if line.endswith(" CACHED"))


@pytest.fixture
def build(where, busybox, ctx):
    def run(dockerfile: str, **kw) -> Built:
        (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
        lines: list[str] = []
        result = builder.build(where, builder.Request(context=ctx, **kw), lines.append)
        return Built(result, lines)
    return run


def _config(store, image_id: str) -> dict:
    return json.loads(store.read_blob(image_id))


def _read(where, store, ref: str, path: str) -> str | None:
    """A file of a built image as a container would see it, or None when it is not there."""
    record = store.resolve(ref)
    with snapshot.Snapshot(where, record.chain_ids) as snap:
        target = snap.merged / path.lstrip("/")
        return target.read_text() if target.exists() else None


def test_multi_stage_build_makes_an_image_with_its_config(build, where, store, ctx):
    (ctx / "app.txt").write_text("source\n")
    built = build("""
        FROM busybox AS compile
        WORKDIR /src
        COPY app.txt .
        RUN tr a-z A-Z < app.txt > out && rm /etc/group
        FROM busybox
        ARG VERSION=1.0
        ENV APP_VERSION=$VERSION GREETING="hello there"
        LABEL org.example.version=$VERSION
        COPY --from=compile --chmod=640 /src/out /app/out
        EXPOSE 8080/tcp 53/udp
        VOLUME /data
        USER app
        WORKDIR /app
        HEALTHCHECK --interval=5s --retries=2 CMD test -f /app/out
        STOPSIGNAL SIGINT
        ONBUILD RUN echo triggered
        COPY --from=0 /src/app.txt /app/by-index.txt
        ENTRYPOINT ["cat"]
        CMD ["/app/out"]
    """, tags=("demo:1",), labels=(("from.compose", "yes"),))
    assert _read(where, store, "demo:1", "/app/out") == "SOURCE\n"
    assert _read(where, store, "demo:1", "/etc/group") is not None  # only the first stage removed it
    doc = _config(store, built.result.image_id)
    cfg = doc["config"]
    assert "APP_VERSION=1.0" in cfg["Env"] and "GREETING=hello there" in cfg["Env"]
    assert cfg["Labels"] == {"org.example.version": "1.0", "from.compose": "yes"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("app", "/app", "SIGINT")
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["cat"], ["/app/out"])
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /app/out"], "Interval": 5_000_000_000,
                                  "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo triggered"]
    assert _read(where, store, "demo:1", "/app/by-index.txt") == "source\n"
    history = doc["history"]
    assert sum(1 for h in history if not h.get("empty_layer")) == len(doc["rootfs"]["diff_ids"])
    assert any(h["created_by"].startswith("COPY --from=compile") for h in history)
    record = store.resolve("demo:1")
    with snapshot.Snapshot(where, record.chain_ids) as snap:
        st = os.stat(snap.merged / "app" / "out")
        assert oct(st.st_mode & 0o777) == oct(0o640)
        assert oct(os.stat(snap.merged / "app").st_mode & 0o777) == oct(0o640)  # made by COPY: --chmod too
        assert oct(os.stat(snap.merged / "etc").st_mode & 0o777) == oct(0o755)  # there before: untouched


def test_cache_hits_and_misses(build, ctx, where, store):
    (ctx / "a.txt").write_text("one\n")
    dockerfile = """
        FROM busybox
        RUN echo base > /base
        ARG FLAVOUR=plain
        COPY a.txt /a.txt
        RUN cat /a.txt > /copy
        ENV FLAVOUR=$FLAVOUR
        LABEL flavour=$FLAVOUR
    """
    first = build(dockerfile, tags=("c:1",))
    assert first.cached() == 0 and first.result.run_steps == 3
    again = build(dockerfile, tags=("c:1",))
    assert again.cached() == 3 and again.result.image_id == first.result.image_id  # the same image
    os.utime(ctx / "a.txt", (1, 1))  # touch alone
    touched = build(dockerfile, tags=("c:1",))
    assert touched.cached() == 3
    (ctx / "a.txt").write_text("two\n")  # one byte changed
    changed = build(dockerfile, tags=("c:1",))
    assert changed.cached() == 1 and changed.result.run_steps == 2
    assert _read(where, store, "c:1", "/copy") == "two\n"
    os.chmod(ctx / "a.txt", 0o600)  # a mode changed
    assert build(dockerfile, tags=("c:1",)).cached() == 1
    other = build(dockerfile, tags=("c:2",), args=(("FLAVOUR", "spicy"),))
    assert other.cached() == 1  # RUN before the ARG only
    cfg = _config(store, other.result.image_id)["config"]
    assert "FLAVOUR=spicy" in cfg["Env"] and cfg["Labels"] == {"flavour": "spicy"}
    back = build(dockerfile, tags=("c:3",), args=(("FLAVOUR", "plain"), ("UNUSED", "x")))
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in back.lines
    assert "FLAVOUR=plain" in _config(store, back.result.image_id)["config"]["Env"]
    assert build(dockerfile, tags=("c:1",), no_cache=True).cached() == 0


def test_cache_survives_a_new_builder_and_gc_keeps_its_layers(build, ctx, store):
    build("FROM busybox\nRUN echo x > /x\n", tags=("g:1",))
    gc.remove_image(store, "g:1")
    gc.collect(store)
    assert build("FROM busybox\nRUN echo x > /x\n", tags=("g:1",)).cached() == 1


def test_a_run_layer_holds_whiteouts_and_no_artefacts(build, where, store):
    built = build("FROM busybox\nRUN rm /etc/group && echo y > /y\n", tags=("w:1",))
    record = store.resolve("w:1")
    top = record.layers[-1]
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(top.digest))) as tar:
        names = set(tar.getnames())
    assert "etc/.wh.group" in names and "y" in names
    assert not names & {"etc/hosts", "etc/resolv.conf", "etc/hostname", "proc", "sys", "dev"}
    assert _read(where, store, "w:1", "/etc/group") is None
    assert built.result.image_id == record.id


def test_a_failing_run_says_where_its_exit_code_and_output_and_tags_nothing(build, store):
    with pytest.raises(builder.BuildError) as failed:
        build("FROM busybox\nRUN true\nRUN echo about to fail; echo last words >&2; exit 7\n", tags=("f:1",))
    message = str(failed.value)
    assert message.startswith("Dockerfile:3:") and "exit code: 7" in message and "last words" in message
    assert store.resolve("f:1") is None


def test_copy_from_outside_the_context_or_missing_is_refused(build, ctx, store):
    (ctx.parent / "secret.txt").write_text("host\n")
    with pytest.raises(builder.BuildError) as outside:
        build("FROM busybox\nCOPY ../secret.txt /s\n", tags=("o:1",))
    assert "Dockerfile:2" in str(outside.value) and "outside" in str(outside.value)
    with pytest.raises(builder.BuildError) as missing:
        build("FROM busybox\nCOPY nothing.txt /n\n", tags=("o:1",))
    assert "nothing.txt" in str(missing.value)
    with pytest.raises(builder.BuildError) as url:
        build("FROM busybox\nADD https://example.com/x.tar.gz /x\n", tags=("o:1",))
    assert "remote" in str(url.value)
    assert store.resolve("o:1") is None


def test_only_the_stages_the_target_needs_are_built(build, where, store):
    built = build("""
        FROM busybox AS broken
        RUN exit 1
        FROM busybox AS base
        RUN echo base > /b
        FROM base AS app
        RUN cat /b > /app
        FROM broken
    """, target="app", tags=("t:1",))
    assert not any("exit 1" in line for line in built.lines)
    assert _read(where, store, "t:1", "/app") == "base\n"


def test_heredocs_add_archives_and_dockerignore(build, ctx, where, store):
    (ctx / ".dockerignore").write_text("**/*.log\n")
    (ctx / "keep").mkdir()
    (ctx / "keep" / "a.txt").write_text("a\n")
    (ctx / "keep" / "b.log").write_text("b\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"inside\n"
        info = tarfile.TarInfo("pkg/file")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "pkg.tar.gz").write_bytes(buf.getvalue())
    build("""
        FROM busybox
        COPY --exclude=*.txt keep /keep-no-txt
        COPY keep /keep
        ADD pkg.tar.gz /opt/
        ENV WHO=builder
        COPY <<EOF /etc/motd
        welcome $WHO
        EOF
        COPY <<"EOF" /etc/raw
        kept $WHO
        EOF
        RUN <<EOT
        set -e
        test -f /keep/a.txt
        test ! -e /keep/b.log
        test ! -e /keep/b.log && cat /opt/pkg/file > /seen
        EOT
    """, tags=("h:1",))
    assert _read(where, store, "h:1", "/seen") == "inside\n"
    assert _read(where, store, "h:1", "/keep-no-txt/a.txt") is None
    assert _read(where, store, "h:1", "/etc/motd") == "welcome builder\n"
    assert _read(where, store, "h:1", "/etc/raw") == "kept $WHO\n"  # a quoted delimiter: no expansion


def test_run_mounts_cache_secret_and_bind(build, ctx, where, store, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    (ctx / "tool.sh").write_text("echo from-bind\n")
    dockerfile = """
        FROM busybox
        ARG RUN_ID
        RUN --mount=type=cache,target=/cache echo "$RUN_ID" >> /cache/runs && cat /cache/runs > /runs-seen
        RUN --mount=type=secret,id=token cat /run/secrets/token > /secret-seen
        RUN --mount=type=bind,source=tool.sh,target=/tool.sh sh /tool.sh > /bind-seen
        RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test ! -e /tmp/x
    """
    build(dockerfile, tags=("m:1",), args=(("RUN_ID", "one"),), secrets=(("token", str(secret)),))
    build(dockerfile, tags=("m:1",), args=(("RUN_ID", "two"),), secrets=(("token", str(secret)),))
    assert _read(where, store, "m:1", "/runs-seen") == "one\ntwo\n"  # the cache dir outlives a step
    assert _read(where, store, "m:1", "/secret-seen") == "s3cret\n"
    assert _read(where, store, "m:1", "/bind-seen") == "from-bind\n"
    record = store.resolve("m:1")
    with snapshot.Snapshot(where, record.chain_ids) as snap:
        for gone in ("cache", "run/secrets", "tool.sh", "scratch"):
            assert not (snap.merged / gone).exists(), gone  # what was mounted is not in the image
    with pytest.raises(builder.BuildError) as missing:
        build(dockerfile, tags=("m:2",), args=(("RUN_ID", "three"),))
    assert "Dockerfile:5:" in str(missing.value) and "/run/secrets/token" in str(missing.value)  # not mounted
    with pytest.raises(builder.BuildError) as required:
        build("FROM busybox\nRUN --mount=type=secret,id=token,required=true true\n", tags=("m:2",))
    assert "Dockerfile:2: secret token is required" in str(required.value)


def test_image_prune_all_drops_the_build_cache(build, store):
    build("FROM busybox\nRUN echo x > /x\n", tags=("p:1",))
    gc.remove_image(store, "p:1")
    gc.prune(store, all_images=True, keep=lambda record: any("busybox" in r for r in record.references))
    gc.collect(store)
    assert build("FROM busybox\nRUN echo x > /x\n", tags=("p:1",)).cached() == 0


def test_another_platform_is_refused(build):
    with pytest.raises(builder.BuildError) as refused:
        build("FROM --platform=linux/s390x busybox\nRUN true\n", tags=("pl:1",))
    assert "Dockerfile:1" in str(refused.value) and "only this host's platform" in str(refused.value)


def test_copy_from_a_named_context_dir(build, where, store, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "f.txt").write_text("from elsewhere\n")
    build("FROM busybox\nCOPY --from=shared f.txt /f.txt\n", tags=("n:1",),
          additional_contexts=(("shared", str(extra)),))
    assert _read(where, store, "n:1", "/f.txt") == "from elsewhere\n"
    (extra / "f.txt").write_text("changed\n")  # its content is in the step's key too
    assert build("FROM busybox\nCOPY --from=shared f.txt /f.txt\n", tags=("n:1",),
                 additional_contexts=(("shared", str(extra)),)).cached() == 0
    assert _read(where, store, "n:1", "/f.txt") == "changed\n"


def test_a_bad_dockerfile_or_a_missing_context_is_said_and_nothing_is_tagged(build, where, store, tmp_path):
    with pytest.raises(builder.BuildError) as syntax:
        build("FROM busybox\nRUNN true\n", tags=("s:1",))
    assert str(syntax.value).startswith("Dockerfile:2:") and "RUNN" in str(syntax.value)
    with pytest.raises(builder.BuildError) as missing:
        builder.build(where, builder.Request(context=tmp_path / "nowhere", tags=("s:1",)), lambda line: None)
    assert "nowhere" in str(missing.value) and "not a directory" in str(missing.value)
    assert store.resolve("s:1") is None


def test_an_image_named_twice_is_pulled_once_per_build(where, busybox, ctx):
    """FROM and COPY --from of the same image, with --pull: one pull, as BuildKit resolves it once."""
    (ctx / "Dockerfile").write_text("FROM busybox AS one\nRUN true\nFROM busybox\n"
                                    "COPY --from=one /bin/sh /a\nCOPY --from=busybox /bin/sh /b\n")
    pulled: list[str] = []
    builder.build(where, builder.Request(context=ctx, pull=True, tags=("twice:1",)), lambda line: None,
                  pulled.append)
    assert pulled == ["busybox"]
