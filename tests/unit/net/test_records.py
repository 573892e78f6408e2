"""Records read while a detach beside us removes one: the reader sees the others."""

from __future__ import annotations

import os

from runtime.net import model, records


def _net(name: str) -> model.Network:
    return model.Network(name, f"br-{name}", "10.90.0.0/24", "10.90.0.1", False, False, 1500)


def test_a_record_removed_between_listing_and_reading_is_left_out(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        records.save_network(tmp_path, _net(name))
    real_stat = os.stat

    def stat_then_a_removal(path, *args, **kwargs):
        found = real_stat(path, *args, **kwargs)
        if str(path).endswith("/b.json"):
            records.drop_network(tmp_path, "b")  # the detach running beside the reader
        return found

    monkeypatch.setattr(records.os, "stat", stat_then_a_removal)
    assert sorted(records.networks(tmp_path)) == ["a", "c"]


def test_a_replaced_record_is_read_again(tmp_path):
    records.save_network(tmp_path, _net("a"))
    assert records.networks(tmp_path)["a"].mtu == 1500
    records.save_network(tmp_path, model.Network("a", "br-a", "10.90.0.0/24", "10.90.0.1",
                                                 False, False, 9000))
    assert records.networks(tmp_path)["a"].mtu == 9000
