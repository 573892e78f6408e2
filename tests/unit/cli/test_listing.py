"""How the network and volume verbs print and filter, as docker's CLI does."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from reconciler.cli import common, listing


def test_table_pads_like_dockers_tabwriter_ten_wide_at_least_and_three_apart():
    out = listing.table(["DRIVER", "VOLUME NAME"], [["local", "data"]])
    assert out == "DRIVER    VOLUME NAME\nlocal     data\n"
    out = listing.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                        [["7fca4eb8c647", "bridge", "bridge", "local"]])
    assert out.splitlines() == ["NETWORK ID     NAME      DRIVER    SCOPE",
                                "7fca4eb8c647   bridge    bridge    local"]


def test_filters_are_checked_and_labels_match_all_given():
    filters = listing.parse_filters(["label=a", "label=b=2", "name=x"], ("label", "name"))
    assert filters == {"label": ["a", "b=2"], "name": ["x"]}
    assert listing.labels_match({"a": "", "b": "2"}, filters["label"])
    assert not listing.labels_match({"a": "", "b": "3"}, filters["label"])
    assert listing.labels_exclude({"a": "1"}, ["b"]) and not listing.labels_exclude({"a": "1"}, ["a=1"])
    with pytest.raises(common.UserFacingError, match="invalid filter 'colour'"):
        listing.parse_filters(["colour=red"], ("label",))
    with pytest.raises(common.UserFacingError, match="bad format of filter"):
        listing.parse_filters(["label"], ("label",))
    assert listing.pattern_match("proj_front", ["^proj_"]) and not listing.pattern_match("x", ["y"])


def test_templates_take_fields_nested_fields_and_json():
    obj = {"Name": "n", "IPAM": {"Driver": "default"}, "Labels": {"a": "b"}, "Internal": False}
    assert listing.template("{{.Name}}\\t{{.IPAM.Driver}} {{.Internal}}", obj) == "n\tdefault false"
    assert listing.template("{{json .Labels}}", obj) == '{"a":"b"}'  # Go's compact encoding
    with pytest.raises(common.UserFacingError, match="can't evaluate field Nope"):
        listing.template("{{.Nope}}", obj)


def test_templates_take_docker_functions_parens_pipes_and_print_values_as_go_does():
    obj = {"Name": "/shop-web-1", "Args": ["-c", "sleep 1"], "Health": None, "Running": True,
           "Config": {"Labels": {"b": "2", "a": "1"}},
           "NetworkSettings": {"Networks": {"shop-front": {"IPAddress": "10.0.0.2"}}}}
    assert listing.template("{{.Args}} {{.Config.Labels}} {{.Health}} {{.Running}}", obj) == \
        "[-c sleep 1] map[a:1 b:2] <no value> true"
    assert listing.template('{{index .Config.Labels "a"}}|{{index .Config.Labels "z"}}|',
                            obj) == "1||"
    assert listing.template('{{(index .NetworkSettings.Networks "shop-front").IPAddress}}',
                            obj) == "10.0.0.2"
    assert listing.template('{{join .Args " "}} {{len .Args}} {{.Name | upper}}', obj) == \
        "-c sleep 1 2 /SHOP-WEB-1"
    assert listing.template("a  {{- .Running -}}  b", obj) == "atrueb"
    assert listing.template('{{json (index .NetworkSettings.Networks "shop-front")}}', obj) == \
        '{"IPAddress":"10.0.0.2"}'
    for bad, why in (("{{nope .Name}}", 'function "nope" not defined'),
                     ("{{.Name .Args}}", "can't give argument to non-function"),
                     ('{{(index .Config.Labels "a"}}', "unclosed left paren"),
                     ("{{.Config.Labels.a.b}}", "can't evaluate field b")):
        with pytest.raises(common.UserFacingError, match=why):
            listing.template(bad, obj)


def test_times_print_as_go_prints_them(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        ns = int(dt.datetime(2024, 5, 2, 12, 21, 53, tzinfo=dt.timezone.utc).timestamp()) * 10**9
        assert listing.go_string(ns + 527545300) == "2024-05-02 12:21:53.5275453 +0000 UTC"
        assert listing.go_string(ns) == "2024-05-02 12:21:53 +0000 UTC"
        assert listing.rfc3339(ns + 5) == "2024-05-02T12:21:53Z"
        assert listing.rfc3339(ns + 5, nano=True) == "2024-05-02T12:21:53.000000005Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_sizes_and_until_and_natural_order():
    assert [listing.human_size(n) for n in (0, 6, 1500, 12_345_678)] == ["0B", "6B", "1.5kB",
                                                                         "12.35MB"]
    now = time.time_ns()
    assert abs(listing.until_ns("1h30m") - (now - 5400 * 10**9)) < 5 * 10**9
    assert listing.until_ns("1700000000") == 1_700_000_000 * 10**9
    assert listing.until_ns("2024-01-01T00:00:00Z") == 1_704_067_200 * 10**9
    with pytest.raises(common.UserFacingError):
        listing.until_ns("soon")
    assert sorted(["net10", "net2", "a"], key=listing.natural_key) == ["a", "net2", "net10"]
