"""The image verbs as a user types them: pull (by reference and for a stack), images, image rm|load|import, login."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from reconciler import cli
from tests.support import oci_image, registry
from tests.support.oci_image import LayerBuilder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pushed(live_registry, tmp_path, busybox_layer, unique):
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [busybox_layer, LayerBuilder().file("etc/app", unique).build()], "1.0")
    live_registry.push(layout, "1.0", f"{unique}/web:1.0")
    return f"{live_registry.host}/{unique}/web:1.0"


def test_pull_list_and_remove_by_reference(capsys, state_root, pushed, unique):
    code, out, _ = run(capsys, "--root", str(state_root), "pull", pushed)
    assert code == 0
    assert f"Pulling {pushed}" in out and "Pull complete" in out
    assert "Status: Downloaded newer image" in out and out.strip().endswith(pushed)
    code, out, _ = run(capsys, "--root", str(state_root), "pull", pushed)
    assert "Image is up to date" in out
    code, out, _ = run(capsys, "--root", str(state_root), "images")
    header, row = out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:2] == [pushed.rsplit(":", 1)[0], "1.0"]
    [entry] = json.loads(run(capsys, "--root", str(state_root), "images", "--format", "json")[1])
    assert entry["Tag"] == "1.0" and entry["ID"].startswith("sha256:") and entry["Size"] > 1_000_000
    code, out, _ = run(capsys, "--root", str(state_root), "image", "rm", pushed)
    assert code == 0 and f"Untagged: {pushed}" in out and "Deleted: sha256:" in out
    assert run(capsys, "--root", str(state_root), "image", "ls")[1].splitlines()[1:] == []
    assert not list((state_root / "images/blobs/sha256").iterdir())
    assert [p.name for p in (state_root / "layers").iterdir()] == ["l"]


def test_pull_for_a_stack_pulls_each_service_image(capsys, state_root, pushed, tmp_path):
    stack = tmp_path / "compose.yaml"
    stack.write_text(f"services:\n  web:\n    image: {pushed}\n  again:\n    image: {pushed}\n"
                     "  built:\n    build: .\n")
    code, out, err = run(capsys, "-f", str(stack), "--root", str(state_root), "pull", "-q")
    assert code == 0, err
    assert out.splitlines() == [pushed]
    code, out, _ = run(capsys, "-f", str(stack), "--root", str(state_root), "pull", "nosuchservice")
    assert code != 0


def test_errors_are_one_line(capsys, state_root, live_registry, unique):
    code, _, err = run(capsys, "--root", str(state_root), "pull", "Bad:ref")
    assert code == 1 and err.startswith("pcompose: error: invalid reference 'Bad:ref'") and "Traceback" not in err
    code, _, err = run(capsys, "--root", str(state_root), "pull", "-q", f"{live_registry.host}/{unique}/none")
    assert code == 1 and "not found" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "--root", str(state_root), "image", "rm", "absent:1")
    assert code == 1 and "no such image: absent:1" in err


def test_load_and_import(capsys, state_root, tmp_path, busybox_layer):
    archive = oci_image.write_docker_archive(tmp_path / "a.tar", [busybox_layer], ["loaded:1"])
    code, out, _ = run(capsys, "--root", str(state_root), "image", "load", "-i", str(archive))
    assert code == 0 and out.strip() == "Loaded image: loaded:1"
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(busybox_layer.tar)
    code, out, _ = run(capsys, "--root", str(state_root), "image", "import", str(tar), "imported:7")
    assert code == 0 and out.startswith("sha256:")
    listed = {(e["Repository"], e["Tag"]) for e in
              json.loads(run(capsys, "--root", str(state_root), "images", "--format", "json")[1])}
    assert listed == {("loaded", "1"), ("imported", "7")}
    code, _, err = run(capsys, "--root", str(state_root), "image", "load", "-i", str(tmp_path / "missing.tar"))
    assert code == 1 and "missing.tar" in err


@pytest.fixture(scope="module")
def auth_registry():
    work = Path(tempfile.mkdtemp(prefix="pcompose-registry-"))
    try:
        with registry.running(work, user="bob", password="builder") as reg:
            yield reg
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_login_then_pull_then_logout(capsys, monkeypatch, tmp_path, state_root, auth_registry, busybox_layer,
                                     unique):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    layout = tmp_path / "layout"
    oci_image.write_layout(layout, [busybox_layer], "1")
    auth_registry.push(layout, "1", f"{unique}/private:1")
    ref = f"{auth_registry.host}/{unique}/private:1"
    code, _, err = run(capsys, "login", auth_registry.host, "-u", "bob", "-p", "wrong")
    assert code == 1 and "login refused" in err
    code, _, err = run(capsys, "--root", str(state_root), "pull", ref)
    assert code == 1 and "pcompose login" in err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("builder\n"))
    code, out, _ = run(capsys, "login", auth_registry.host, "-u", "bob", "--password-stdin")
    assert code == 0 and "Login Succeeded" in out
    assert run(capsys, "--root", str(state_root), "pull", "-q", ref)[0] == 0
    code, out, _ = run(capsys, "logout", auth_registry.host)
    assert code == 0 and "Removing login credentials" in out
    assert auth_registry.host not in (tmp_path / "docker/config.json").read_text()


def test_load_from_stdin(capsys, monkeypatch, state_root, tmp_path, busybox_layer):
    archive = oci_image.write_docker_archive(tmp_path / "a.tar", [busybox_layer], ["piped:1"])

    class Stdin:
        buffer = open(archive, "rb")

        @staticmethod
        def isatty() -> bool:
            return False

    monkeypatch.setattr("sys.stdin", Stdin)
    try:
        code, out, _ = run(capsys, "--root", str(state_root), "image", "load")
    finally:
        Stdin.buffer.close()
    assert code == 0 and out.strip() == "Loaded image: piped:1"


def test_two_processes_pull_into_one_store(state_root, pushed):
    import os
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[3]
    cmd = [sys.executable, "-m", "reconciler.cli", "--root", str(state_root), "pull", "-q", pushed]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert all(out.decode().strip() == pushed for out, _ in results)
    layers = [p for p in (state_root / "layers").iterdir() if p.name != "l"]
    assert len(layers) == 2 and all((p / "complete").is_file() for p in layers)
    assert not list((state_root / "images/ingest").iterdir())
