"""Prometheus text format of the agent's metrics."""

from __future__ import annotations

from reconciler.agent import metrics


def test_render_counters_with_labels_and_read_gauges():
    m = metrics.Metrics()
    m.counter("pcompose_steps_total", "Plan steps run")
    m.inc("pcompose_steps_total", action="create", status="done")
    m.inc("pcompose_steps_total", action="create", status="done")
    m.inc("pcompose_steps_total", action="remove", status='odd "quoted"')
    m.gauge("pcompose_projects", "Projects", lambda: 3)
    assert m.render() == "\n".join([
        "# HELP pcompose_projects Projects",
        "# TYPE pcompose_projects gauge",
        "pcompose_projects 3",
        "# HELP pcompose_steps_total Plan steps run",
        "# TYPE pcompose_steps_total counter",
        'pcompose_steps_total{action="create",status="done"} 2',
        'pcompose_steps_total{action="remove",status="odd \\"quoted\\""} 1',
    ]) + "\n"
    assert m.value("pcompose_steps_total", action="create", status="done") == 2
