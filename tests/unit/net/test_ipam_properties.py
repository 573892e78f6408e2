"""IPAM invariants under random sequences of requests and under concurrent callers."""

from __future__ import annotations

import concurrent.futures
import tempfile
from pathlib import Path

from hypothesis import given, settings, strategies as st

from runtime.net import ipam

owners = st.sampled_from([f"c{i}" for i in range(20)])
steps = st.lists(st.tuples(st.sampled_from(["allocate", "static", "release"]), owners,
                           st.integers(min_value=1, max_value=14)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_no_address_is_ever_held_twice_and_each_owner_holds_one(ops):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ipam.reserve_network(root, "p_a", "10.5.0.0/28", None, None, (), [])
        for op, owner, n in ops:
            try:
                if op == "allocate":
                    ipam.allocate(root, "p_a", owner)
                elif op == "static":
                    ipam.allocate(root, "p_a", owner, f"10.5.0.{n}")
                else:
                    ipam.release(root, "p_a", owner)
            except ipam.IpamError:
                pass  # refused requests change nothing; the invariant below still holds
            leases = ipam.observe(root)["p_a"].leases
            assert len({lease.ipv4 for lease in leases}) == len(leases)
            assert len({lease.owner for lease in leases}) == len(leases)
            assert "10.5.0.1" not in {lease.ipv4 for lease in leases}  # the gateway


def test_concurrent_callers_get_distinct_addresses(tmp_path: Path):
    ipam.reserve_network(tmp_path, "p_a", "10.6.0.0/24", None, None, (), [])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: ipam.allocate(tmp_path, "p_a", f"c{i}").ipv4, range(64)))

    assert len(set(got)) == 64
    assert len(ipam.observe(tmp_path)["p_a"].leases) == 64
