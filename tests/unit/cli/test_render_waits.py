"""The progress lines of a depends_on wait, in docker compose's words: `Waiting`, then `Healthy`
for service_healthy and `Exited` for service_completed_successfully, one line per container."""

from __future__ import annotations

import types

from reconciler.cli import render


def lines(status: str, message: str, containers=None) -> list[str]:
    event = types.SimpleNamespace(type="step", status=status, resource="service:job",
                                  action="await", message=message, containers=containers)
    return render.step_lines("shop", event, {})


def test_a_completed_dependency_is_waited_for_then_exited():
    assert lines("started", "completed successfully", ["shop-job-1"]) == [
        "Container shop-job-1  Waiting"]
    assert lines("done", "completed successfully", ["shop-job-1"]) == [
        "Container shop-job-1  Exited"]


def test_a_healthy_dependency_is_waited_for_then_healthy_on_each_container():
    names = ["shop-job-1", "shop-job-2"]
    assert lines("started", "healthy", names) == ["Container shop-job-1  Waiting",
                                                  "Container shop-job-2  Waiting"]
    assert lines("done", "healthy", names) == ["Container shop-job-1  Healthy",
                                               "Container shop-job-2  Healthy"]


def test_without_the_containers_the_service_names_its_first_one():
    assert lines("done", "completed successfully") == ["Container shop-job-1  Exited"]
    assert lines("failed", "container shop-job-1 exited (3)", []) == [
        "Container shop-job-1  Error container shop-job-1 exited (3)"]
