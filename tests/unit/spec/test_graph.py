"""Start and stop order from depends_on (the loader has refused cycles already)."""

from __future__ import annotations

from reconciler.spec import graph
from tests.unit.spec.helpers import load

STACK = """
services:
  web: {image: x, depends_on: {api: {condition: service_healthy}, cache: {condition: service_started}}}
  api: {image: x, depends_on: [db]}
  db: {image: x}
  cache: {image: x}
  worker: {image: x, depends_on: [db], profiles: [jobs]}
"""


def test_start_order_puts_dependencies_first(tmp_path):
    project = load(tmp_path, STACK)
    assert graph.start_order(project.stack, project.services_enabled) == [
        ["cache", "db"], ["api"], ["web"]]
    assert graph.stop_order(project.stack, ["api", "db"]) == [["api"], ["db"]]


def test_dependents(tmp_path):
    project = load(tmp_path, STACK, profiles=["jobs"])
    assert graph.dependents(project.stack, "db") == ["api", "worker"]
    assert graph.dependents(project.stack, "web") == []


def test_unsupported_drivers_warn(tmp_path):
    project = load(tmp_path, "services: {web: {image: x}}\nnetworks: {m: {driver: weave}}\n"
                             "volumes: {v: {driver: nfs}}\n")
    texts = [str(w) for w in project.warnings]
    assert any('networks.m.driver: driver "weave" is not supported' in t for t in texts)
    assert any('volumes.v.driver: driver "nfs" is not supported' in t for t in texts)
