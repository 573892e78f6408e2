"""The cluster's desired state as keys and values: assignment keys, a project's record read
into placement's terms, and one node's share of a submission; pure, no etcd."""

from __future__ import annotations

import json

import pytest

from reconciler.agent import cluster_projects
from reconciler.cluster import desired, placement


def test_assignment_keys_round_trip_and_foreign_keys_are_not_assignments() -> None:
    key = desired.assignment("n1", "shop", "web", 3)
    assert key == "/pcompose/v1/assignments/n1/shop/web/3"
    assert desired.parse_assignment(key) == desired.Assignment("n1", "shop", "web", 3)
    assert desired.parse_assignment("/pcompose/v1/assignments/n1/shop/web/x") is None
    assert desired.parse_assignment("/pcompose/v1/nodes/n1/spec") is None
    assert desired.node_assignments("n1") == "/pcompose/v1/assignments/n1/"
    assert desired.parse_project_key("/pcompose/v1/projects/shop") == ("shop", "")
    assert desired.parse_project_key("/pcompose/v1/projects/shop/status") == ("shop", "status")
    assert desired.parse_project_key("/pcompose/v1/projects/shop/other") is None
    with pytest.raises(ValueError):
        desired.project("../x")


def test_a_normalized_stack_in_placement_terms() -> None:
    stack = {"services": {
        "web": {"image": "busybox", "scale": 3,
                "ports": [{"target": 80, "published": "8080", "protocol": "tcp"},
                          {"target": 90, "published": "9000-9001"},
                          {"target": 53, "protocol": "udp"}],
                "volumes": [{"type": "volume", "source": "data", "target": "/d"},
                            {"type": "bind", "source": "/tmp", "target": "/t"}],
                "deploy": {"replicas": 3, "placement": {
                    "constraints": ["node.labels.zone==east"],
                    "preferences": [{"spread": "node.labels.rack"}],
                    "max_replicas_per_node": 2}}},
        "agent": {"image": "busybox", "deploy": {"mode": "global"}}}}
    project = desired.read_project("shop", desired.record("shop", 4, stack).encode())
    assert project.generation == 4
    assert project.services == (
        placement.Service("agent", 1, placement.GLOBAL),
        placement.Service("web", 3, placement.REPLICATED, ("node.labels.zone==east",),
                          ("node.labels.rack",), 2, ("8080/tcp",), ("data",)))
    with pytest.raises(ValueError):
        desired.read_project("shop", b'{"stack": 3}')


def test_one_nodes_share_keeps_the_cluster_wide_replica_numbers() -> None:
    submission: dict = {"stack": {"services": {"web": {"image": "busybox"},
                                         "db": {"image": "busybox"}}},
                  "hashes": {"web": "h1", "db": "h2"},
                  "options": {"scale": {"web": 4}, "removed": ["service:web:4"]}}
    share = cluster_projects.for_node(submission, {"web": {1, 3}})
    # web 1 and 3 here: scaled to 3 with 2 marked removed; db not here at all.
    assert share["options"]["scale"] == {"db": 1, "web": 3}
    assert share["options"]["removed"] == ["service:db:1", "service:web:2", "service:web:4"]
    assert share["hashes"] == submission["hashes"]
    assert submission["options"]["scale"] == {"web": 4}  # the submission itself untouched


def test_the_record_carries_the_services_an_up_wants_scaled() -> None:
    submission: dict = {"stack": {"services": {"web": {"image": "busybox"},
                                         "off": {"image": "busybox"}}},
                  "hashes": {"web": "h1"}, "options": {"scale": {"web": 2}}}
    value = desired.record("shop", 1, cluster_projects.stack_of(submission), submission)
    assert json.loads(value)["stack"]["services"] == {"web": {"image": "busybox", "scale": 2}}
    assert desired.submission_of(value.encode()) == submission
    assert desired.submission_of(b'{"stack": {}}') is None


def test_the_deploy_keys_the_cluster_applies_warn_so_and_the_others_as_not_applied(
        tmp_path) -> None:
    from tests.unit.spec.helpers import load

    project = load(tmp_path, """
        services:
          web:
            image: x
            deploy:
              placement: {constraints: [node.labels.zone == a]}
              update_config: {parallelism: 1}
              rollback_config: {parallelism: 1}
        """)
    texts = [str(w) for w in project.warnings]
    for key in ("placement", "update_config"):
        assert any(f"services.web.deploy.{key}: applied in cluster mode" in t for t in texts)
        assert not any(f"deploy.{key}: parsed but not applied" in t for t in texts)
    assert any("services.web.deploy.rollback_config: parsed but not applied" in t
               for t in texts)
