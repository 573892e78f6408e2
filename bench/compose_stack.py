"""The stacks and the image of the compose benchmark: N busybox `sleep` services on one network."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import busybox  # noqa: E402

# Fully qualified, so that neither tool guesses a registry for it; no pull ever happens.
IMAGE = "localhost/pcompose-bench-busybox:latest"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def service_name(index: int) -> str:
    return f"svc{index:03d}"


def stack(count: int, revisions: dict[str, int] | None = None) -> dict:
    """A stack of `count` services; `revisions` bumps a service's environment to force a recreate.

    busybox `sleep` as PID 1 ignores SIGTERM, so every tool would wait out the grace period on
    stop: SIGKILL keeps `down` about the orchestrator. The default network is internal so that
    no tool sets up NAT to the outside for it."""
    revisions = revisions or {}
    services = {}
    for i in range(count):
        name = service_name(i)
        services[name] = {
            "image": IMAGE,
            "pull_policy": "never",
            "command": ["sleep", "86400"],
            "stop_signal": "SIGKILL",
            "environment": {"BENCH_REVISION": str(revisions.get(name, 1))},
        }
    return {"services": services, "networks": {"default": {"internal": True}}}


def write_stack(path: Path, count: int, revisions: dict[str, int] | None = None) -> Path:
    path.write_text(yaml.safe_dump(stack(count, revisions), sort_keys=False))
    return path


def _reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Fixed times and no owner names: the same layer, hence the same image id, on every run.
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def _layer_tar(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(rootfs)), recursive=False, filter=_reproducible)
    return buffer.getvalue()


def write_image_archive(dest: Path) -> Path:
    """A docker-archive tar (manifest.json, config JSON, one layer) of a busybox root, tagged IMAGE."""
    with tempfile.TemporaryDirectory(prefix="pcompose-bench-rootfs-") as tmp:
        layer = _layer_tar(busybox.make_rootfs(Path(tmp)))
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "bench/compose_stack.py"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    layer_name = f"{layer_digest}/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE], "Layers": [layer_name]}]).encode()
    with tarfile.open(dest, mode="w") as tar:
        for name, data in ((layer_name, layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest
