"""Per-key exponential backoff with bounded jitter."""

from __future__ import annotations

import random

from reconciler.engine import backoff


def test_delays_grow_per_key_are_capped_and_forgotten_on_success():
    b = backoff.Backoff(base=0.1, cap=2.0, jitter=0.0)
    assert [b.next_delay("a") for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert b.next_delay("b") == 0.1
    b.forget("a")
    assert b.next_delay("a") == 0.1


def test_jitter_stays_within_its_bound_and_varies():
    b = backoff.Backoff(base=1.0, factor=1.0, jitter=0.1, rng=random.Random(7))
    delays = [b.next_delay("k") for _ in range(50)]
    assert all(0.9 <= d <= 1.1 for d in delays)
    assert len(set(delays)) > 1
