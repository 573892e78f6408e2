"""The agent's counters and gauges, in a prometheus_client registry of its own, for `/metrics`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import core

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# A `<name>_created` series beside every counter would add names to /metrics that no one
# asked for: the agent's counters start with its process.
prometheus_client.disable_created_metrics()


class Metrics:
    """One agent's metrics; a registry per instance, so agents and tests in one process (and
    prometheus_client's default process collectors) do not mix."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self._counters: dict[str, prometheus_client.Counter] = {}
        self._scraped = _ReadWhenScraped()
        self.registry.register(self._scraped)

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        """A total this process counts with `inc`; declaring it again keeps the first."""
        if name not in self._counters:
            self._counters[name] = prometheus_client.Counter(
                name, help, labelnames=labels, registry=self.registry)

    def gauge(self, name: str, help: str, read: Callable[[], float],
              kind: str = "gauge") -> None:
        """A value read when scraped; `kind="counter"` for a total kept elsewhere."""
        self._scraped.values[name] = (kind, help, read)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        """The text exposition format, as CONTENT_TYPE says."""
        return prometheus_client.generate_latest(self.registry)


class _ReadWhenScraped:
    """A collector of values that live elsewhere (the store, the event bus), read at scrape."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def describe(self) -> list:
        return []  # nothing fixed to check for clashes; reading here would run every `read`

    def collect(self) -> Iterator[core.Metric]:
        for name, (kind, help, read) in sorted(self.values.items()):
            family = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            yield family(name, help, value=read())
