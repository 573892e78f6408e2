"""A rolling service's share on one node: its previous definition until every slot of it
there is released; durations as compose writes them."""

from __future__ import annotations

from reconciler.agent import cluster_depends, cluster_rollout


def body(command: str) -> dict:
    return {"stack": {"services": {"web": {"command": [command]}, "db": {"command": ["db"]}}},
            "hashes": {"web": command, "db": "db"}, "options": {}}


def test_a_node_runs_the_old_definition_until_all_its_slots_are_released():
    previous = body("old")
    rollout = {"generation": 2, "previous": previous, "services": {"web": [1]},
               "state": cluster_rollout.ROLLING}
    new = body("new")
    held = cluster_rollout.apply(new, rollout, 2, {"web": {1, 3}})
    assert held["stack"]["services"]["web"] == {"command": ["old"]}
    assert held["hashes"]["web"] == "old"
    assert new["hashes"]["web"] == "new"  # the body given is left alone
    assert cluster_rollout.apply(new, rollout, 2, {"web": {1}}) == new
    assert cluster_rollout.apply(new, rollout, 3, {"web": {3}}) == new  # a newer generation
    done = rollout | {"state": cluster_rollout.DONE}
    assert cluster_rollout.apply(new, done, 2, {"web": {3}}) == new


def test_durations_and_rolling_services():
    assert cluster_rollout._seconds("1m30s", 0) == 90
    assert cluster_rollout._seconds("500ms", 0) == 0.5
    assert cluster_rollout._seconds(None, 5.0) == 5.0
    assert cluster_rollout._seconds("1x", 5.0) == 5.0
    before, after = body("a"), body("b")
    assert cluster_rollout.rolling(before, after) == []  # no update_config: all at once
    after["stack"]["services"]["web"]["deploy"] = {"update_config": {"parallelism": 1}}
    assert cluster_rollout.rolling(before, after) == ["web"]
    assert cluster_rollout.rolling(None, after) == []


def test_conditions_from_published_status():
    assert not cluster_depends.holds("service_started", [])
    assert cluster_depends.holds("service_started", [{"state": "running"}])
    assert not cluster_depends.holds("service_healthy", [{"state": "running",
                                                          "health": "starting"}])
    assert cluster_depends.holds("service_completed_successfully",
                                 [{"state": "exited", "exit_code": 0}])
    assert not cluster_depends.holds("service_completed_successfully",
                                     [{"state": "exited", "exit_code": 1}])
