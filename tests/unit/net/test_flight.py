"""Concurrent requests for one rebuild share runs, and each returns only once a run that began
after its request is done."""

import threading

import pytest

from runtime.net import flight


def test_concurrent_requests_share_runs_and_each_is_covered():
    records: list[int] = []  # what callers wrote, in order
    seen_by_runs: list[int] = []  # how many records each run read
    one = flight.Flight()
    all_asked = threading.Event()

    def rebuild():
        seen_by_runs.append(len(records))
        if len(seen_by_runs) == 1:
            # The first run lasts until every caller has asked: they pile up behind it.
            assert all_asked.wait(30), "not every caller asked"

    covered_at_return: list[bool] = []
    lock = threading.Lock()

    def caller(i: int):
        with lock:
            records.append(i)
            mine = len(records)
            if mine == 20:
                all_asked.set()
        one.run(rebuild)
        covered_at_return.append(max(seen_by_runs) >= mine)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(covered_at_return)
    assert len(seen_by_runs) <= 3  # the first run, maybe one racing it, one follow-up
    assert seen_by_runs[-1] == 20


def test_a_failed_run_covers_nobody_and_the_next_caller_runs_it_again():
    one = flight.Flight()
    calls = []

    def broken():
        calls.append("broken")
        raise RuntimeError("nft said no")

    with pytest.raises(RuntimeError, match="nft said no"):
        one.run(broken)
    assert one.run(lambda: calls.append("ok")) is True
    assert calls == ["broken", "ok"]


def test_flights_are_per_key():
    ran = []
    flight.run(("test", "a"), lambda: ran.append("a"))
    flight.run(("test", "b"), lambda: ran.append("b"))
    assert ran == ["a", "b"]
