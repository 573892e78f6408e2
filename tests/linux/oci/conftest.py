"""Fixtures for real containers: a busybox root, a private layout (state root, run dir, cgroup parent)
and a teardown that removes every container, cgroup dir and conmon the test made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime.cgroups import drivers
from runtime.oci import layout, lifecycle, model, runc
from tests.support import busybox


@pytest.fixture
def rootfs(state_root: Path) -> Path:
    return busybox.make_rootfs(state_root / "rootfs")


@pytest.fixture
async def lay(state_root: Path, run_dir: Path, unique: str):
    lay = layout.Layout(root=state_root / "state", run_dir=run_dir, cgroup_parent=f"/pcompose-test-{unique}")
    try:
        yield lay
    finally:
        await remove_all(lay)


async def remove_all(lay: layout.Layout) -> None:
    if (lay.run_dir / "runc").exists():
        for state in await runc.list_all(lay.runc):
            await lifecycle.remove(lay, state["id"])
    for leftover in (lay.root / "containers").glob("*"):  # half-made: runc never knew it
        await lifecycle.remove(lay, leftover.name)
    drivers.detect().remove(lay.cgroup_parent)


@pytest.fixture
def make(rootfs: Path, unique: str):
    """Build a ContainerConfig for project `unique`; keyword arguments override fields."""

    def build(service: str = "app", replica: int = 1, **fields) -> model.ContainerConfig:
        identity = fields.pop("identity", model.Identity(project=unique, service=service, replica=replica, config_hash="h1", image="busybox"))
        base = model.ContainerConfig(name=f"{unique}-{service}-{replica}", identity=identity, rootfs=str(rootfs))
        return dataclasses.replace(base, **fields)

    return build
