"""Docker's restart policy decisions and its increasing delay."""

from __future__ import annotations

import pytest

from reconciler.plan import model, restarts


def decide(policy, exit_code=1, ran_for=0.0, previous=0.0, count=0, stopped=False):
    return restarts.decide(model.RestartPolicy.parse(policy), exit_code=exit_code,
                           ran_for=ran_for, previous_delay=previous, restart_count=count,
                           stopped_by_user=stopped)


def test_delay_doubles_from_100ms_up_to_a_minute_and_resets_after_10s_of_running():
    delays, previous = [], 0.0
    for _ in range(12):
        previous = restarts.next_delay(previous, ran_for=1)
        delays.append(previous)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert restarts.next_delay(60.0, ran_for=10) == 0.1


@pytest.mark.parametrize("policy, exit_code, stopped, count, expected", [
    ("no", 1, False, 0, False),
    ("always", 0, False, 0, True),
    ("always", 0, True, 0, False),
    ("unless-stopped", 3, False, 0, True),
    ("unless-stopped", 3, True, 0, False),
    ("on-failure", 0, False, 0, False),
    ("on-failure", 1, False, 99, True),
    ("on-failure:3", 1, False, 2, True),
    ("on-failure:3", 1, False, 3, False),
])
def test_policy_decides(policy, exit_code, stopped, count, expected):
    assert decide(policy, exit_code, count=count, stopped=stopped).restart is expected


def test_reasons_are_readable():
    assert decide("on-failure:3", 1, count=3).reason == "gave up after 3 restarts"
    assert decide("on-failure:3", 7).reason == "exited 7, restart policy on-failure:3"


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", ""])
def test_bad_policy_says_what(text):
    with pytest.raises(ValueError, match="invalid restart policy"):
        model.RestartPolicy.parse(text)


@pytest.mark.parametrize("policy, expected", [
    ("always", True), ("unless-stopped", False), ("on-failure", False), ("no", False)])
def test_a_stop_asked_of_an_earlier_agent_is_forgotten_by_always_only(policy, expected):
    # As dockerd's restart: `always` runs again, whatever stopped it before.
    decision = restarts.decide(model.RestartPolicy.parse(policy), exit_code=137, ran_for=5.0,
                               previous_delay=0.0, restart_count=0, stopped_by_user=True,
                               stopped_before_agent=True)
    assert decision.restart is expected
