"""How far a layer may expand: the limits and how they are set."""

import pytest

from runtime.images import unpack


def test_defaults_are_generous():
    limits = unpack.Limits.from_env({})
    assert limits.max_size == 64 << 30 and limits.max_entries == 4_000_000


def test_sizes_take_docker_units():
    env = {unpack.MAX_SIZE_ENV: "512m", unpack.MAX_ENTRIES_ENV: "1000"}
    assert unpack.Limits.from_env(env) == unpack.Limits(512 << 20, 1000)
    assert unpack.parse_size("2G", "x") == 2 << 30
    assert unpack.parse_size("10kb", "x") == 10 << 10
    assert unpack.parse_size("1 GiB", "x") == 1 << 30
    assert unpack.parse_size("4096", "x") == 4096


@pytest.mark.parametrize("env, fault", [
    ({unpack.MAX_SIZE_ENV: "lots"}, "PCOMPOSE_LAYER_MAX_SIZE='lots': expected a size"),
    ({unpack.MAX_SIZE_ENV: "0"}, "expected a size"),
    ({unpack.MAX_ENTRIES_ENV: "-5"}, "PCOMPOSE_LAYER_MAX_ENTRIES='-5': expected a positive"),
])
def test_a_bad_setting_says_which(env, fault):
    with pytest.raises(unpack.LayerError, match=fault):
        unpack.Limits.from_env(env)
