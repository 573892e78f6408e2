"""deploy.resources and legacy keys become one Resources value, with compose's rules and errors."""

from __future__ import annotations

import pytest

from runtime.cgroups import compose, model

MiB = 1024 * 1024


def test_deploy_and_legacy_keys_agree_or_fail():
    res = compose.from_compose(limits_memory="64m", mem_limit=64 * MiB, limits_cpus="0.5", pids_limit=10,
                               reservations_memory="32M", cpu_shares=512, cpuset="0-1", blkio_weight=300)
    assert res == model.Resources(memory_limit=64 * MiB, memory_reservation=32 * MiB, memory_swap=128 * MiB,
                                  cpus=0.5, cpu_shares=512, cpuset_cpus="0-1", pids_limit=10, blkio_weight=300)
    assert res.cpu_quota == 50_000
    with pytest.raises(compose.ResourceError, match=r"mem_limit \(1048576\) and deploy.resources.limits.memory \(2097152\)"):
        compose.from_compose(limits_memory="2m", mem_limit="1m")


def test_swap_quota_and_bad_values():
    assert compose.from_compose(mem_limit="1g", memswap_limit=-1).memory_swap == -1
    assert compose.from_compose(cpu_quota=25_000, cpu_period=50_000).cpus == 0.5
    with pytest.raises(compose.ResourceError, match="mem_limit: '12 parsecs' is not a size"):
        compose.from_compose(mem_limit="12 parsecs")
    with pytest.raises(compose.ResourceError, match="must not be below the memory limit"):
        compose.from_compose(mem_limit="1g", memswap_limit="512m")
    with pytest.raises(compose.ResourceError, match="outside 10..1000"):
        compose.from_compose(blkio_weight=5)
    assert compose.from_compose() == model.Resources()
