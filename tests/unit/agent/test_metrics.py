"""The agent's metrics as a Prometheus scraper reads them."""

from __future__ import annotations

from prometheus_client import parser

from reconciler.agent import metrics


def scrape(m: metrics.Metrics) -> dict[str, tuple[str, str, dict]]:
    """name -> (type, help, {sorted label pairs: value}), parsed as Prometheus would."""
    out = {}
    for family in parser.text_string_to_metric_families(m.render().decode()):
        samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def test_counters_with_labels_and_values_read_when_scraped_keep_their_names():
    m = metrics.Metrics()
    m.counter("pcompose_steps_total", "Plan steps run", ("action", "status"))
    m.counter("pcompose_steps_total", "declared again: the first one stays", ("other",))
    m.inc("pcompose_steps_total", action="create", status="done")
    m.inc("pcompose_steps_total", action="create", status="done")
    m.inc("pcompose_steps_total", action="remove", status='odd "quoted"\nline')
    projects = [3]
    m.gauge("pcompose_projects", "Projects", lambda: projects[0])
    m.gauge("pcompose_events_published_total", "Events published", lambda: 7, kind="counter")
    projects[0] = 4
    found = scrape(m)
    # The parser names a counter family without `_total`; the samples keep it, as before.
    assert sorted(found) == ["pcompose_events_published", "pcompose_projects", "pcompose_steps"]
    assert found["pcompose_steps"] == ("counter", "Plan steps run", {
        (("action", "create"), ("status", "done")): 2.0,
        (("action", "remove"), ("status", 'odd "quoted"\nline')): 1.0})
    assert found["pcompose_projects"] == ("gauge", "Projects", {(): 4.0})
    assert found["pcompose_events_published"] == ("counter", "Events published", {(): 7.0})
    text = m.render().decode()
    assert "_created" not in text
    assert "# TYPE pcompose_steps_total counter" in text
    assert m.value("pcompose_steps_total", action="create", status="done") == 2
    assert m.value("pcompose_projects") == 4


def test_each_agent_has_its_own_registry():
    first, second = metrics.Metrics(), metrics.Metrics()
    for m in (first, second):
        m.counter("pcompose_reconciles_total", "Reconciles", ("result",))
    first.inc("pcompose_reconciles_total", result="ok")
    assert first.value("pcompose_reconciles_total", result="ok") == 1
    assert second.value("pcompose_reconciles_total", result="ok") == 0
