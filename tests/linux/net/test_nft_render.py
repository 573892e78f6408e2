"""Every table `nft.render` can produce is accepted by the kernel, replaces the last one whole,
and lists back exactly the published ports it was given."""

from __future__ import annotations

import ipaddress
import re
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime.net import model, netns, nft


ELEMENT = re.compile(r"\d+ : [\d.]+ \. \d+")


@pytest.fixture(scope="module")
def scratch_ns():
    path = Path("/run/pcompose-test") / ("nft" + uuid.uuid4().hex[:7]) / "netns" / "host"
    netns.ensure(path)
    try:
        yield path
    finally:
        netns.remove(path)
        path.parent.rmdir()
        path.parent.parent.rmdir()


@st.composite
def rulesets(draw):
    count = draw(st.integers(min_value=0, max_value=4))
    nets = tuple(
        model.Network(f"p_{i}", f"pcb{i}", f"10.{i}.0.0/24", f"10.{i}.0.1", internal=draw(st.booleans()))
        for i in range(count)
    )
    published, used = [], set()
    for _ in range(draw(st.integers(min_value=0, max_value=12)) if count else 0):
        net = draw(st.sampled_from(nets))
        proto = draw(st.sampled_from(["tcp", "udp"]))
        port = draw(st.integers(min_value=1, max_value=65535))
        host_ip = draw(st.sampled_from(["", "127.0.0.1", "192.0.2.7"]))
        if (proto, port) in used:
            continue  # attach refuses a host port claimed twice
        used.add((proto, port))
        ip = str(ipaddress.ip_address(f"10.{nets.index(net)}.0.0") + draw(st.integers(2, 254)))
        published.append(nft.Published(ip, net.bridge, model.PortMapping(draw(st.integers(1, 65535)), port, proto, host_ip)))
    return nft.Ruleset("pcompose_prop", nets, tuple(published))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rulesets())
def test_rendered_tables_apply_and_list_their_ports(scratch_ns, desired):
    nft.apply(scratch_ns, desired)

    listed = nft.observe(scratch_ns, "pcompose_prop")
    for p in desired.published:
        key = f"{p.port.host_ip} . {p.port.published}" if p.port.host_ip else str(p.port.published)
        assert f"{key} : {p.ipv4} . {p.port.target}" in listed
    assert len(ELEMENT.findall(listed)) == len(desired.published)
    for net in desired.networks:
        assert (f'ip saddr {net.subnet} oifname != "{net.bridge}" masquerade' in listed) != net.internal


def test_a_listed_table_is_listed_again_only_when_the_ruleset_moved(scratch_ns):
    net = model.Network("p_gen", "pcbgen", "10.9.0.0/24", "10.9.0.1")
    desired = nft.Ruleset("pcompose_gen", (net,), (nft.Published("10.9.0.2", "pcbgen", model.PortMapping(80, 8080)),))
    nft.apply(scratch_ns, desired)
    try:
        first = nft.listed_digest(scratch_ns, desired.table)
        generation = nft.generation(scratch_ns)
        assert first is not None
        assert nft.listed_digest(scratch_ns, desired.table) == first
        assert nft.generation(scratch_ns) == generation  # listing commits nothing

        nft.run(scratch_ns, f"flush chain ip {desired.table} forward\n")  # a hand edit
        assert nft.generation(scratch_ns) > generation
        assert nft.listed_digest(scratch_ns, desired.table) not in (first, None)

        nft.apply(scratch_ns, desired)
        assert nft.listed_digest(scratch_ns, desired.table) == first
        nft.remove(scratch_ns, desired.table)
        assert nft.listed_digest(scratch_ns, desired.table) is None
    finally:
        nft.remove(scratch_ns, desired.table)
