"""macvlan and ipvlan networks: accepted with a parent link and a known mode, refused with the
file, line and column otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import spec
from tests.unit.spec.helpers import load


def refused(tmp_path, text: str) -> spec.SpecError:
    with pytest.raises(spec.SpecError) as info:
        load(tmp_path, text)
    return info.value


@pytest.mark.parametrize("driver, opts", [
    ("macvlan", "{parent: eth0, macvlan_mode: bridge}"),
    ("macvlan", "{parent: eth0}"),
    ("macvlan", "{parent: eth0, macvlan_mode: passthru}"),
    ("ipvlan", "{parent: eth0, ipvlan_mode: l3}"),
])
def test_underlay_networks_are_accepted(tmp_path, driver, opts):
    project = load(tmp_path, f"""
        services: {{web: {{image: busybox, networks: [lan]}}}}
        networks:
          lan:
            driver: {driver}
            driver_opts: {opts}
            ipam: {{config: [{{subnet: 192.0.2.0/24, gateway: 192.0.2.1, ip_range: 192.0.2.64/28}}]}}
        """)
    net = project.stack.networks["lan"]
    assert net.driver == driver and net.driver_opts["parent"] == "eth0"
    assert not [w for w in project.warnings if "networks.lan" in str(w)]


def test_a_missing_parent_is_refused_where_the_options_are(tmp_path):
    err = refused(tmp_path, """
        services: {web: {image: busybox}}
        networks:
          lan:
            driver: macvlan
            driver_opts:
              macvlan_mode: bridge
        """)
    assert (Path(err.file).name, err.line, err.column) == ("compose.yaml", 5, 5)
    assert 'driver "macvlan" needs driver_opts.parent' in str(err)
    assert "networks.lan.driver_opts" in str(err)


def test_a_missing_parent_without_options_is_refused_at_the_driver(tmp_path):
    err = refused(tmp_path, """
        services: {web: {image: busybox}}
        networks:
          lan:
            driver: ipvlan
        """)
    assert (err.line, err.column) == (4, 5)
    assert 'driver "ipvlan" needs driver_opts.parent' in str(err)


@pytest.mark.parametrize("driver, mode, known", [
    ("macvlan", "l2", "bridge, private, vepa, passthru"),
    ("ipvlan", "bridge", "l2, l3"),
])
def test_an_unknown_mode_is_refused_at_its_place(tmp_path, driver, mode, known):
    err = refused(tmp_path, f"""
        services: {{web: {{image: busybox}}}}
        networks:
          lan:
            driver: {driver}
            driver_opts:
              parent: eth0
              {driver}_mode: {mode}
        """)
    assert (Path(err.file).name, err.line, err.column) == ("compose.yaml", 7, 7)
    assert f'{driver}_mode "{mode}" is not one of {known}' in str(err)
