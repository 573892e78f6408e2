"""From a Compose file to plan values: hashes without limits, names, dependencies, the plan."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reconciler import spec
from reconciler.agent import desired, store
from reconciler.plan import diff, model

STACK = """
name: shop
services:
  web:
    image: busybox
    ports: ["8080:80"]
    depends_on:
      db: {condition: service_healthy}
    volumes: [data:/data, /anon]
    mem_limit: 64m
    deploy: {replicas: 2, resources: {limits: {pids: 50}}}
    restart: on-failure:3
  db:
    image: busybox
    healthcheck: {test: ["CMD", "true"]}
    networks: [back]
  debug:
    image: busybox
    profiles: [debug]
networks: {back: {}}
volumes:
  data: {}
  shared: {external: true}
"""


def load(tmp_path: Path, text: str = STACK) -> spec.Project:
    (tmp_path / "compose.yaml").write_text(text)
    return spec.load([str(tmp_path / "compose.yaml")])


def record(project: spec.Project) -> store.ProjectRecord:
    stack = project.stack.model_dump(mode="json", exclude_none=True)
    return store.ProjectRecord(project.name, json.dumps(stack),
                               hashes=tuple(sorted(desired.hashes(project).items())))


def test_a_loaded_stack_becomes_plan_values(tmp_path: Path):
    state = desired.from_record(record(load(tmp_path)))
    web = state.service("web")
    assert [s.name for s in state.services] == ["db", "web"]  # debug's profile is off
    assert (web.replicas, web.networks, web.volumes) == (2, ("default",), ("data",))
    assert web.depends_on == (model.Dependency("db", model.Condition.HEALTHY),)
    assert web.restart == model.RestartPolicy("on-failure", 3)
    # docker gives as much swap as memory when only the memory limit is set
    assert web.limits == model.Limits(memory=64 << 20, memory_swap=128 << 20, pids=50)
    assert state.service("db").has_healthcheck and not web.has_healthcheck
    assert [(n.key, n.name) for n in state.networks] == [("back", "shop_back"),
                                                         ("default", "shop_default")]
    assert [(v.key, v.name) for v in state.volumes] == [("data", "shop_data")]
    assert str(diff.diff(state, model.ObservedState())) == "\n".join([
        "#1 network:back create",
        "#2 network:default create",
        "#3 volume:data create",
        "#4 service:db:1 create after #1",
        "#5 service:db await (healthy) after #4",
        "#6 service:web:1 create after #2, #3, #5",
        "#7 service:web:2 create after #2, #3, #5",
    ])


def test_limits_do_not_change_the_hash_but_other_keys_do(tmp_path: Path):
    base = desired.hashes(load(tmp_path))
    more_memory = desired.hashes(load(tmp_path, STACK.replace("mem_limit: 64m",
                                                              "mem_limit: 128m")))
    no_limits = desired.hashes(load(tmp_path, STACK.replace(
        "deploy: {replicas: 2, resources: {limits: {pids: 50}}}", "deploy: {replicas: 2}")))
    new_image = desired.hashes(load(tmp_path, STACK.replace(
        "image: busybox\n    ports", "image: busybox:2\n    ports")))
    assert base["web"] == more_memory["web"] == no_limits["web"]
    assert new_image["web"] != base["web"] and new_image["db"] == base["db"]


def test_the_hashes_sent_are_the_ones_config_hash_prints(tmp_path: Path):
    project = load(tmp_path)
    assert desired.hashes(project) == {n: project.config_hash(n) for n in ("db", "web")}
    stored = desired.from_record(record(project))
    assert stored.service("web").config_hash == project.config_hash("web")
    # A record without hashes (an older agent's) derives the same ones from its stack.
    bare = store.ProjectRecord("shop", record(project).stack)
    assert desired.from_record(bare).service("web").config_hash == project.config_hash("web")


def test_a_cpu_period_change_alone_is_planned_in_place(tmp_path: Path):
    text = STACK.replace("mem_limit: 64m", "mem_limit: 64m\n    cpus: 0.5")
    before = desired.from_record(record(load(tmp_path, text)))
    after = desired.from_record(record(load(tmp_path, text.replace(
        "cpus: 0.5", "cpus: 0.5\n    cpu_period: 50000"))))
    web = before.service("web")
    assert after.service("web").limits == dataclasses.replace(web.limits, cpu_period=50000)
    observed = model.ObservedState((model.ObservedContainer(
        "shop-web-1", "shop", "web", 1, web.config_hash, None, model.ContainerState.RUNNING,
        limits=web.limits),))
    plan = str(diff.diff(after, observed)).splitlines()
    assert "#6 service:web:1 update (limits changed) after #2, #3, #5" in plan


def test_a_limits_only_change_is_planned_in_place(tmp_path: Path):
    before = desired.from_record(record(load(tmp_path)))
    after = desired.from_record(record(load(tmp_path, STACK.replace("mem_limit: 64m",
                                                                    "mem_limit: 96m"))))
    web = before.service("web")
    observed = model.ObservedState(
        tuple(model.ObservedContainer(f"shop-web-{n}", "shop", "web", n, web.config_hash,
                                      None, model.ContainerState.RUNNING, limits=web.limits)
              for n in (1, 2)))
    plan = str(diff.diff(after, observed)).splitlines()
    assert [line for line in plan if "service:web" in line] == [
        "#6 service:web:1 update (limits changed) after #2, #3, #5",
        "#7 service:web:2 update (limits changed) after #2, #3, #5",
    ]


def test_hashes_for_unknown_services_are_refused(tmp_path: Path):
    bad = store.ProjectRecord("shop", record(load(tmp_path)).stack, hashes=(("nope", "x"),))
    with pytest.raises(ValueError, match="hashes: no service nope"):
        desired.from_record(bad)
