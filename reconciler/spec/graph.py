"""The depends_on graph of a stack: start order, stop order and who depends on whom."""

from __future__ import annotations

from reconciler.spec import model


def start_order(stack: model.Stack, names) -> list[list[str]]:
    """`names` in waves: each wave only depends on earlier waves (names sorted within a wave).

    The loader has already refused cycles, so every service lands in some wave.
    """
    wanted = set(names)
    placed: dict[str, int] = {}

    def wave(name: str) -> int:
        if name not in placed:
            deps = [d for d in stack.services[name].depends_on if d in wanted]
            placed[name] = 1 + max((wave(d) for d in deps), default=-1)
        return placed[name]

    for name in wanted:
        wave(name)
    waves: list[list[str]] = [[] for _ in range(max(placed.values(), default=-1) + 1)]
    for name, index in placed.items():
        waves[index].append(name)
    return [sorted(w) for w in waves]


def stop_order(stack: model.Stack, names) -> list[list[str]]:
    """The reverse of start_order: dependents stop before what they depend on."""
    return list(reversed(start_order(stack, names)))


def dependents(stack: model.Stack, name: str) -> list[str]:
    """Services that depend on `name` directly, sorted."""
    return sorted(n for n, s in stack.services.items() if name in s.depends_on)
