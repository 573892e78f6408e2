"""Golden plans for drift: what the kernel lost is put back in place, nothing else moves."""

from __future__ import annotations

import dataclasses

from reconciler.plan import diff, model
from tests.unit.plan.test_diff import DB, WEB, nets, running, state


def plan_of(desired, *containers, networks=None, rules_drift="", **options) -> str:
    found = networks if networks is not None else nets("default")
    observed = model.ObservedState(tuple(containers), found, (), rules_drift=rules_drift)
    return str(diff.diff(desired, observed, model.DiffOptions(**options)))


def gone(key: str = "default") -> tuple[model.ObservedNetwork, ...]:
    return (dataclasses.replace(nets(key)[0], drift="bridge missing"),)


def test_a_deleted_bridge_is_repaired_then_the_veths_it_lost_without_a_restart():
    plan = plan_of(state(WEB, DB), running(WEB, net_drift="veth pcv1 off its bridge"),
                   running(DB, net_drift="veth pcv2 off its bridge"), networks=gone())
    assert plan == "\n".join([
        "#1 network:default repair (bridge missing)",
        "#2 service:db:1 repair (veth pcv2 off its bridge) after #1",
        "#3 service:web:1 repair (veth pcv1 off its bridge) after #1",
    ])


def test_a_lost_veth_repairs_that_container_only():
    plan = plan_of(state(WEB, DB), running(WEB, net_drift="veth pcv1 missing"), running(DB))
    assert plan == "#1 service:web:1 repair (veth pcv1 missing)"


def test_a_stopped_container_has_no_veth_to_repair():
    exited = running(WEB, net_drift="veth pcv1 missing", state=model.ContainerState.EXITED,
                     exit_code=0)
    assert plan_of(state(WEB), exited) == ""


def test_a_changed_table_is_applied_again_after_the_bridges():
    assert plan_of(state(WEB), running(WEB), rules_drift="table missing") == \
        "#1 rules repair (table missing)"
    assert plan_of(state(WEB), running(WEB), networks=gone(), rules_drift="table changed") == \
        "\n".join(["#1 network:default repair (bridge missing)",
                   "#2 rules repair (table changed) after #1"])


def test_a_project_without_networks_leaves_the_table_to_those_with_some():
    lonely = dataclasses.replace(WEB, networks=())
    assert plan_of(state(lonely), running(lonely), networks=(), rules_drift="table missing") == ""


def test_a_limit_changed_by_hand_is_written_again_in_place():
    plan = plan_of(state(WEB), running(WEB, limits_drift="memory limit changed by hand"))
    assert plan == "#1 service:web:1 repair (memory limit changed by hand)"


def test_veths_and_limits_are_repaired_in_one_step():
    plan = plan_of(state(WEB), running(WEB, net_drift="veth pcv1 missing",
                                       limits_drift="pids limit changed by hand"))
    assert plan == "#1 service:web:1 repair (veth pcv1 missing; pids limit changed by hand)"


def test_drift_does_not_survive_a_recreate_decision():
    changed = dataclasses.replace(WEB, config_hash="h-web-2")
    plan = plan_of(state(changed), running(WEB, net_drift="veth pcv1 missing"))
    assert plan == "#1 service:web:1 recreate (config changed)"
