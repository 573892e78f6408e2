"""The etcd gateway's JSON as the client reads and writes it, the key layout, and how node
references resolve: pure, no etcd."""

from __future__ import annotations

import base64

import pytest

from reconciler.cluster import etcd, keys, membership


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_prefix_end_covers_exactly_the_prefix():
    assert etcd.prefix_end("/a/") == b"/a0"
    assert etcd.prefix_end(b"a\xff") == b"b"
    assert etcd.prefix_end(b"\xff\xff") == b"\0"  # every key


def test_comparisons_and_operations_in_the_gateways_form():
    assert etcd.compare("/k", "create", "=", 0) == {
        "key": b64("/k"), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    assert etcd.compare("/k", "value", "!=", "v")["value"] == b64("v")
    assert etcd.put_op("/k", b"v", lease=7) == {
        "request_put": {"key": b64("/k"), "value": b64("v"), "lease": "7"}}
    assert "lease" not in etcd.put_op("/k", "v")["request_put"]
    assert etcd.delete_op("/a/", prefix=True) == {
        "request_delete_range": {"key": b64("/a/"), "range_end": b64("/a0")}}


def test_watch_responses_become_events_or_errors():
    put = {"kv": {"key": b64("/k"), "value": b64("v"), "mod_revision": "5",
                  "create_revision": "4", "lease": "9"}}
    gone = {"type": "DELETE", "kv": {"key": b64("/k"), "mod_revision": "6"}}
    events = etcd._watch_events({"result": {"header": {"revision": "6"},
                                            "events": [put, gone]}})
    assert [(e.type, e.kv.key, e.kv.value, e.revision, e.kv.lease) for e in events] == [
        ("put", "/k", b"v", 5, 9), ("delete", "/k", b"", 6, 0)]
    assert etcd._watch_events({"result": {"created": True}}) == []
    with pytest.raises(etcd.Compacted) as caught:
        etcd._watch_events({"result": {"canceled": True, "compact_revision": "12"}})
    assert caught.value.compact_revision == 12
    with pytest.raises(etcd._Retry):  # "no leader": resumed on another member
        etcd._watch_events({"result": {"canceled": True, "cancel_reason": "no leader"}})
    with pytest.raises(etcd._Retry):
        etcd._watch_events({"error": {"grpc_code": 14, "message": "unavailable"}})


def test_key_layout():
    assert keys.node_status("abc") == "/pcompose/v1/nodes/abc/status"
    assert keys.parse_node_key("/pcompose/v1/nodes/abc/spec") == ("abc", "spec")
    assert keys.parse_node_key("/pcompose/v1/vnis/7") is None
    assert keys.subnet("n1", "10.1.0.0/24") == "/pcompose/v1/networks/n1/subnets/10.1.0.0-24"
    with pytest.raises(ValueError):
        keys.node("../x")


def node(node_id: str, hostname: str) -> membership.Node:
    return membership.Node(node_id, hostname, "", membership.READY, "active", "worker", (), ())


def test_a_node_is_named_by_id_hostname_or_unique_id_prefix():
    nodes = [node("abc123", "h1"), node("abd456", "h2"), node("h1zzz", "h3")]
    assert membership.resolve(nodes, "h1").id == "abc123"  # a hostname before an id prefix
    assert membership.resolve(nodes, "abd").hostname == "h2"
    assert membership.resolve(nodes, "h1zzz").hostname == "h3"
    with pytest.raises(membership.NodeError, match="ambiguous"):
        membership.resolve(nodes, "ab")
    with pytest.raises(membership.NodeError, match="not found"):
        membership.resolve(nodes, "zz")


def test_the_node_id_is_made_once_and_kept(tmp_path):
    made = membership.node_id(tmp_path)
    assert keys.NODE_ID.match(made) and len(made) == 25
    assert membership.node_id(tmp_path) == made
    assert (tmp_path / membership.ID_FILE).stat().st_mode & 0o777 == 0o600
