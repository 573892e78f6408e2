"""Placement decisions: swarm's constraint grammar, spread, limits, ports, availability and
the minimal moves, as golden tables of who runs where; and properties over random clusters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cluster import placement as pl


def node(name: str, **kw: object) -> pl.Node:
    labels = kw.pop("labels", {})
    engine = kw.pop("engine", {})
    assert isinstance(labels, dict) and isinstance(engine, dict)
    return pl.Node(name, hostname=name, labels=tuple(sorted(labels.items())),
                   engine_labels=tuple(sorted(engine.items())), **kw)  # type: ignore[arg-type]


def where(result: pl.Result) -> dict[str, list[str]]:
    """Golden form: service -> node of each slot, in slot order."""
    table: dict[str, list[str]] = {}
    for (service, _slot), node_id in sorted(result.assignments.items()):
        table.setdefault(service, []).append(node_id)
    return table


NODES = [node("a", ip="10.0.0.1", labels={"zone": "east", "rack": "r1"}, engine={"ssd": "yes"}),
         node("b", ip="10.0.0.2", labels={"zone": "East", "rack": "r2"}, role="manager"),
         node("c", ip="10.0.1.3", labels={"zone": "west", "rack": "r1"}, arch="aarch64")]


@pytest.mark.parametrize(("constraint", "expected"), [
    ("node.hostname==b", ["b"]),
    ("node.hostname!=b", ["a", "c"]),
    ("node.id == c", ["c"]),
    ("node.role==manager", ["b"]),
    ("node.role!=MANAGER", ["a", "c"]),
    ("node.ip==10.0.0.0/24", ["a", "b"]),
    ("node.ip==10.0.1.3", ["c"]),
    ("node.ip!=10.0.0.0/24", ["c"]),
    ("node.platform.os==Linux", ["a", "b", "c"]),
    ("node.platform.arch==arm64", ["c"]),
    ("node.platform.arch==x86_64", ["a", "b"]),
    ("node.labels.zone==east", ["a", "b"]),  # case-insensitive values
    ("node.labels.zone==eas", []),  # whole strings, not prefixes
    ("node.labels.zone!=east", ["c"]),
    ("node.labels.missing!=x", ["a", "b", "c"]),  # a missing label differs from everything
    ("node.labels.missing==x", []),
    ("engine.labels.ssd==YES", ["a"]),
])
def test_each_constraint_key_selects_its_nodes(constraint: str, expected: list[str]) -> None:
    constraints = (pl.parse("web", constraint),)
    assert [n.id for n in NODES if pl.unmet(constraints, n) is None] == expected


def test_constraints_are_anded() -> None:
    service = pl.Service("web", replicas=2, constraints=(
        "node.labels.zone==east", "node.role==worker"))
    assert where(pl.place(NODES, [service], {})) == {"web": ["a", "a"]}


def test_an_unknown_key_is_an_error_naming_the_key_and_the_service() -> None:
    service = pl.Service("web", constraints=("node.label.zone==east",))
    result = pl.place(NODES, [service], {})
    assert result.assignments == {}
    assert "service web" in result.errors["web"]
    assert "'node.label.zone'" in result.errors["web"]
    assert pl.validate([service]) == {"web": result.errors["web"]}
    with pytest.raises(pl.PlacementError, match="invalid constraint"):
        pl.parse("web", "node.hostname=a")
    with pytest.raises(pl.PlacementError, match="not an address"):
        pl.parse("web", "node.ip==10.0.0.300")


def test_a_constraint_no_node_meets_says_why_each_node_was_rejected() -> None:
    service = pl.Service("db", constraints=("node.labels.zone==north",))
    result = pl.place(NODES, [service], {})
    assert result.assignments == {}
    assert result.errors["db"] == (
        "service db: no node meets its constraints ("
        "a: constraint node.labels.zone==north not met (node.labels.zone is 'east'); "
        "b: constraint node.labels.zone==north not met (node.labels.zone is 'East'); "
        "c: constraint node.labels.zone==north not met (node.labels.zone is 'west'))")


def test_what_fails_an_up_at_once() -> None:
    services = [pl.Service("web", constraints=("node.labels.zone==east",)),
                pl.Service("typo", constraints=("nod.hostname==a",)),
                pl.Service("nowhere", constraints=("node.hostname==z",)),
                pl.Service("free")]
    drained = [node("a", labels={"zone": "east"}, availability=pl.DRAIN, ready=False)]
    errors = pl.impossible(drained, services)
    assert sorted(errors) == ["nowhere", "typo"]  # a down or drained node may come back
    assert "unknown constraint key 'nod.hostname'" in errors["typo"]
    assert errors["nowhere"] == ("service nowhere: no node meets its constraints (a: "
                                 "constraint node.hostname==z not met (node.hostname is 'a'))")


def test_replicas_spread_over_nodes_then_by_fewest_containers() -> None:
    busy = {"a": pl.Load(containers=5), "b": pl.Load(containers=1)}
    result = pl.place(NODES, [pl.Service("web", replicas=4)], {}, load=busy)
    # fewest replicas of the service first: a gets one before anyone gets a second
    assert where(result) == {"web": ["c", "b", "a", "c"]}


def test_spread_preference_balances_label_values_first() -> None:
    # rack r1 has a and c, r2 has b: with spread on rack, r2's single node gets as many
    # replicas as r1's two together.
    service = pl.Service("web", replicas=4, spread=("node.labels.rack",))
    assert where(pl.place(NODES, [service], {})) == {"web": ["a", "b", "c", "b"]}


def test_max_replicas_per_node_leaves_the_rest_unplaced_with_the_reason() -> None:
    service = pl.Service("web", replicas=4, max_per_node=1)
    result = pl.place(NODES, [service], {})
    assert where(result) == {"web": ["a", "b", "c"]}
    assert result.errors["web"].startswith("service web: 1 of 4 replicas can't be placed")
    assert "a: max_replicas_per_node 1 reached" in result.errors["web"]


def test_a_fixed_host_port_is_never_twice_on_one_node() -> None:
    web = pl.Service("web", replicas=2, ports=("80/tcp",))
    proxy = pl.Service("proxy", replicas=1, ports=("80/tcp",))
    result = pl.place(NODES, [web, proxy], {}, load={"c": pl.Load(ports=frozenset({"80/tcp"}))})
    # services are placed in name order: proxy first
    assert where(result) == {"proxy": ["a"], "web": ["b"]}
    assert result.errors["web"] == (
        "service web: 1 of 2 replicas can't be placed (a: host port 80/tcp already "
        "published there; b: host port 80/tcp already published there; c: host port 80/tcp "
        "already published there)")


def test_global_mode_runs_one_replica_per_eligible_node() -> None:
    agent = pl.Service("agent", mode=pl.GLOBAL, constraints=("node.labels.zone==east",))
    assert where(pl.place(NODES, [agent], {})) == {"agent": ["a", "b"]}
    everywhere = pl.Service("agent", mode=pl.GLOBAL)
    kept = pl.place(NODES, [everywhere], {("agent", 1): "c", ("agent", 2): "a"})
    assert kept.assignments == {("agent", 1): "c", ("agent", 2): "a", ("agent", 3): "b"}


def test_drained_nodes_get_nothing_paused_ones_keep_theirs() -> None:
    nodes = [node("a", availability=pl.DRAIN), node("b", availability=pl.PAUSE), node("c")]
    current = {("web", 1): "a", ("web", 2): "b"}
    result = pl.place(nodes, [pl.Service("web", replicas=3)], current)
    assert where(result) == {"web": ["c", "b", "c"]}


def test_a_down_node_keeps_its_replicas_during_the_grace_period_only() -> None:
    current = {("web", 1): "a", ("web", 2): "b"}
    holding = [node("a", ready=False, holding=True), node("b"), node("c")]
    assert where(pl.place(holding, [pl.Service("web", replicas=2)], current)) == {
        "web": ["a", "b"]}
    gone = [node("a", ready=False), node("b"), node("c")]
    assert where(pl.place(gone, [pl.Service("web", replicas=2)], current)) == {
        "web": ["c", "b"]}


def test_relabelled_node_loses_what_no_longer_fits() -> None:
    service = pl.Service("web", replicas=2, constraints=("node.labels.zone==east",))
    current = {("web", 1): "a", ("web", 2): "b"}
    relabelled = [node("a", labels={"zone": "east"}), node("b", labels={"zone": "west"}),
                  node("c", labels={"zone": "east"})]
    assert where(pl.place(relabelled, [service], current)) == {"web": ["a", "c"]}


def test_nothing_moves_when_nothing_changed_and_scale_down_drops_high_slots() -> None:
    service = pl.Service("web", replicas=3)
    first = pl.place(NODES, [service], {})
    again = pl.place(NODES, [service], first.assignments)
    assert again.assignments == first.assignments
    assert pl.moves(first.assignments, again.assignments) == 0
    smaller = pl.place(NODES, [pl.Service("web", replicas=2)], first.assignments)
    assert smaller.assignments == {k: v for k, v in first.assignments.items() if k[1] <= 2}


def test_a_volume_service_stays_put_until_its_node_is_down_then_warns() -> None:
    db = pl.Service("db", volumes=("data",))
    current = {("db", 1): "b"}
    busy_elsewhere = {"a": pl.Load(), "c": pl.Load()}
    assert pl.place(NODES, [db], current, load=busy_elsewhere).assignments == {("db", 1): "b"}
    down = [NODES[0], node("b", ready=False), NODES[2]]
    moved = pl.place(down, [db], current)
    assert moved.assignments == {("db", 1): "a"}
    assert moved.warnings == ("service db replica 1 moved from b to a: its volumes data "
                              "start empty there",)


def test_no_nodes_at_all() -> None:
    result = pl.place([], [pl.Service("web")], {})
    assert result.errors["web"] == "service web: 1 of 1 replicas can't be placed: " \
        "the cluster has no nodes"


# -- properties over random clusters

LABEL_VALUES = st.sampled_from(["x", "y", "z"])


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[pl.Node], list[pl.Service], dict[pl.Slot, str]]:
    count = draw(st.integers(1, 6))
    nodes = [pl.Node(f"n{i}", hostname=f"n{i}",
                     labels=(("zone", draw(LABEL_VALUES)),),
                     availability=draw(st.sampled_from([pl.ACTIVE, pl.ACTIVE, pl.PAUSE,
                                                        pl.DRAIN])),
                     ready=draw(st.booleans()) or draw(st.booleans()))
             for i in range(count)]
    services = []
    for i in range(draw(st.integers(1, 4))):
        services.append(pl.Service(
            f"s{i}", replicas=draw(st.integers(0, 6)),
            mode=draw(st.sampled_from([pl.REPLICATED, pl.REPLICATED, pl.GLOBAL])),
            constraints=tuple(draw(st.lists(
                st.builds(lambda op, v: f"node.labels.zone{op}{v}",
                          st.sampled_from(["==", "!="]), LABEL_VALUES), max_size=2))),
            spread=draw(st.sampled_from([(), ("node.labels.zone",)])),
            max_per_node=draw(st.integers(0, 3)),
            ports=draw(st.sampled_from([(), ("80/tcp",), ("80/tcp", "53/udp")]))))
    current = {}
    for service in services:
        for slot in range(1, draw(st.integers(0, 6)) + 1):
            current[(service.name, slot)] = draw(st.sampled_from([n.id for n in nodes]))
    return nodes, services, current


def check_invariants(nodes: list[pl.Node], services: list[pl.Service],
                     result: pl.Result) -> None:
    by_id = {n.id: n for n in nodes}
    by_name = {s.name: s for s in services}
    ports: dict[tuple[str, str], pl.Slot] = {}
    per_node: dict[tuple[str, str], int] = {}
    for (name, slot), node_id in result.assignments.items():
        service, target = by_name[name], by_id[node_id]
        constraints = tuple(pl.parse(name, c) for c in service.constraints)
        assert pl.unmet(constraints, target) is None, (name, slot, node_id)
        assert target.availability != pl.DRAIN and target.ready
        for port in service.ports:
            assert (node_id, port) not in ports, (name, slot, ports[(node_id, port)])
            ports[(node_id, port)] = (name, slot)
        per_node[(name, node_id)] = per_node.get((name, node_id), 0) + 1
        if service.max_per_node:
            assert per_node[(name, node_id)] <= service.max_per_node
        if service.mode == pl.GLOBAL:
            assert per_node[(name, node_id)] == 1
        else:
            assert 1 <= slot <= service.replicas


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_placement_properties(cluster: tuple[list[pl.Node], list[pl.Service],
                                             dict[pl.Slot, str]]) -> None:
    nodes, services, current = cluster
    result = pl.place(nodes, services, current)
    check_invariants(nodes, services, result)
    # Stable: placing again from its own answer changes nothing.
    again = pl.place(nodes, services, result.assignments)
    assert again.assignments == result.assignments
    # Minimal: a replica without ports or a limit stays where it was while its node still
    # may hold it (ready or in its grace period, not drained, meeting the constraints).
    by_id, by_name = {n.id: n for n in nodes}, {s.name: s for s in services}
    for (name, slot), node_id in current.items():
        service, was = by_name[name], by_id[node_id]
        constraints = tuple(pl.parse(name, c) for c in service.constraints)
        if (service.mode == pl.REPLICATED and slot <= service.replicas and not service.ports
                and not service.max_per_node and was.ready and was.availability != pl.DRAIN
                and pl.unmet(constraints, was) is None):
            assert result.assignments[(name, slot)] == node_id
    # Every replica that has no node is explained.
    for service in services:
        placed = sum(1 for (name, _) in result.assignments if name == service.name)
        if service.mode == pl.REPLICATED and placed < service.replicas:
            assert service.name in result.errors
