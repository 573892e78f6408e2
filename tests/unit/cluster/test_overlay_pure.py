"""The overlay's pure parts, no etcd and no kernel: the network keys, a network's record, how a
copy of the store reads as subnet claims, VTEPs and endpoints, and the DNS's remote names."""

from __future__ import annotations

import ipaddress
import json

import pytest

from reconciler.cluster import etcd, keys, overlay
from runtime.net import dns


def kv(key: str, value: dict | str) -> etcd.KV:
    raw = value if isinstance(value, str) else json.dumps(value)
    return etcd.KV(key, raw.encode(), 1, 1)


def test_network_keys_parse_back():
    assert keys.parse_network_key(keys.network_spec("abc")) == ("abc", "spec", "")
    assert keys.parse_network_key(keys.subnet("abc", "10.128.1.0/24")) == (
        "abc", "subnets", "10.128.1.0-24")
    assert keys.parse_network_key(keys.vtep("abc", "n1")) == ("abc", "vteps", "n1")
    assert keys.parse_network_key(keys.endpoint("abc", "n1.p-web-1")) == (
        "abc", "endpoints", "n1.p-web-1")
    assert keys.parse_network_key(keys.node_status("n1")) is None
    assert keys.parse_network_key(keys.NETWORKS + "UPPER/spec") is None


def test_a_network_record_round_trips_and_hosts_get_a_24_of_a_16():
    net = overlay.Network("abc", "mesh", "10.128.0.0/16", 4096,
                          overlay._host_prefix(ipaddress.IPv4Network("10.128.0.0/16")),
                          True, 1.5, (("a", "b"),))
    assert overlay.Network.from_json(json.loads(json.dumps(net.to_json()))) == net
    assert net.host_prefix == 24
    # a network too small for /24s is split in 16 parts at most, a /28 at the least
    assert overlay._host_prefix(ipaddress.IPv4Network("10.1.0.0/22")) == 26
    assert overlay._host_prefix(ipaddress.IPv4Network("10.1.0.0/26")) == 28


def test_a_copy_of_the_store_reads_as_networks_claims_vteps_and_endpoints():
    net = overlay.Network("abc", "mesh", "10.128.0.0/16", 4096, 24)
    state = {k.key: k for k in [
        kv(keys.network_spec("abc"), net.to_json()),
        kv(keys.network_spec("bad"), "not json"),
        kv(keys.subnet("abc", "10.128.0.0/24"), {"node": "n1"}),
        kv(keys.subnet("abc", "10.128.1.0/24"), {"node": "n2"}),
        kv(keys.vtep("abc", "n2"), {"subnet": "10.128.1.0/24", "underlay_ip": "198.18.0.2",
                                     "vtep_mac": "02:00:00:00:00:02", "mtu": 1400}),
        kv(keys.endpoint("abc", "n2.p-web-1"), {"ip": "10.128.1.2", "node": "n2",
                                                 "names": ["p-web-1"], "service": "web",
                                                 "aliases": [], "ready": True}),
        kv(keys.node_status("n2"), {"address": "198.18.0.2"}),
    ]}
    assert overlay._networks(state) == {"abc": net}
    view = overlay._View(state, net)
    assert view.claims == {"10.128.0.0/24": "n1", "10.128.1.0/24": "n2"}
    assert set(view.vteps) == {"n2"} and set(view.endpoints) == {"n2.p-web-1"}
    assert overlay._nodes_up(state) == {"n2": {"address": "198.18.0.2"}}


def test_find_takes_a_name_an_id_or_a_unique_id_prefix():
    nets = [overlay.Network("abc1", "mesh", "10.128.0.0/16", 4096, 24),
            overlay.Network("abd2", "other", "10.129.0.0/16", 4097, 24)]
    assert overlay.find(nets, "mesh").id == "abc1"
    assert overlay.find(nets, "abd").name == "other"
    with pytest.raises(overlay.OverlayError, match="ambiguous"):
        overlay.find(nets, "ab")
    with pytest.raises(overlay.OverlayError, match="not found"):
        overlay.find(nets, "nope")


def test_remote_names_are_answered_beside_local_ones_and_replaced_whole():
    remote = dns.Remote()
    remote.replace({"mesh": {"web": ("10.128.1.2", "10.128.2.2")}})
    assert sorted(remote.lookup("mesh", "WEB.")) == ["10.128.1.2", "10.128.2.2"]
    assert remote.lookup("other", "web") == ()
    remote.replace({})
    assert remote.lookup("mesh", "web") == ()


def test_the_embedded_dns_answers_local_replicas_and_other_hosts_ones_together():
    from dnslib import DNSRecord

    view = dns.View("mesh", "10.128.0.1", "10.128.0.0/24",
                    records=(("web", ("10.128.0.5",)),))
    server = dns.Server(None)
    dns.REMOTE.replace({"mesh": {"web": ("10.128.1.2",), "api": ("10.128.1.3",)}})
    try:
        found = server.local(view, "10.128.0.9", DNSRecord.question("web"))
        assert found is not None
        assert sorted(str(rr.rdata) for rr in found.rr) == ["10.128.0.5", "10.128.1.2"]
        assert all(rr.ttl <= 5 for rr in found.rr)
        api = server.local(view, "10.128.0.9", DNSRecord.question("api"))
        assert api is not None and [str(rr.rdata) for rr in api.rr] == ["10.128.1.3"]
        assert server.local(view, "10.128.0.9", DNSRecord.question("nope")) is None
    finally:
        dns.REMOTE.replace({})
