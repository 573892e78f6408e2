"""Helpers for container tests: run to exit, read what a container printed."""

from __future__ import annotations

from runtime.oci import layout, lifecycle, logs, model


async def run_to_exit(lay: layout.Layout, config: model.ContainerConfig, timeout: float = 20.0) -> lifecycle.ExitStatus:
    await lifecycle.run(lay, config)
    status = await lifecycle.wait(lay, config.name, timeout=timeout)
    assert status is not None, f"{config.name} did not exit within {timeout}s"
    return status


def output(lay: layout.Layout, cid: str, stream: str = "stdout") -> str:
    return "\n".join(line.text for line in logs.read(lay.log_path(cid)) if line.stream == stream)
