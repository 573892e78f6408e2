"""Counters and gauges of the agent, rendered in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    kind: str  # counter or gauge
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    read: Callable[[], float] | None = None  # a gauge read when scraped


class Metrics:
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def counter(self, name: str, help: str) -> None:
        self._families.setdefault(name, _Family("counter", help))

    def gauge(self, name: str, help: str, read: Callable[[], float],
              kind: str = "gauge") -> None:
        """A value read when scraped; `kind="counter"` for a total kept elsewhere."""
        self._families[name] = _Family(kind, help, read=read)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        family = self._families[name]
        key = tuple(sorted(labels.items()))
        family.values[key] = family.values.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        family = self._families[name]
        if family.read:
            return family.read()
        return family.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines = []
        for name, family in sorted(self._families.items()):
            lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.kind}")
            values = {(): family.read()} if family.read else family.values
            for labels, value in sorted(values.items()):
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return _escape_help(text).replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
