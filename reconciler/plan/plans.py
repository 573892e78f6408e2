"""A Plan: numbered steps with the steps they wait for, printable as golden text."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TypeVar

from reconciler.plan import model

_T = TypeVar("_T")


class Action(str, enum.Enum):
    """What a step does; the executor looks each up in the caller's mapping."""

    CREATE = "create"
    RECREATE = "recreate"
    UPDATE = "update"  # resource limits in place, no restart
    START = "start"
    UNPAUSE = "unpause"
    RESTART = "restart"
    REMOVE = "remove"
    REQUIRE = "require"  # an external resource must exist
    AWAIT = "await"  # a depends_on condition: started, healthy, completed
    REPAIR = "repair"  # put back what drifted (bridge, veth, nft table), nothing restarted


@dataclass(frozen=True)
class Edge:
    """`step` waits for step number `after`; if not `required`, a failure there does not stop it."""

    after: int
    required: bool = True

    def __str__(self) -> str:
        return f"#{self.after}" if self.required else f"#{self.after}?"


Target = (model.DesiredContainer | model.ObservedContainer | model.DesiredNetwork
          | model.ObservedNetwork | model.DesiredVolume | model.ObservedVolume
          | model.DesiredService | None)


@dataclass(frozen=True)
class Step:
    """One idempotent action on one resource; `desired`/`observed` are what the step acts on."""

    number: int
    resource: str  # service:web:1, network:default, volume:data, service:db
    action: Action
    reason: str = ""
    after: tuple[Edge, ...] = ()
    desired: Target = None
    observed: Target = None
    delay: float = 0.0  # wait this long before acting (restart backoff)
    # A start's restart accounting, decided by the plan: the actuator only writes it down.
    restarts: model.RestartCount | None = None

    def desired_as(self, kind: type[_T]) -> _T:
        """`desired` as the kind the step's action on its resource acts on; a step that carries
        another is a planner bug, raised as one rather than acted on."""
        if not isinstance(self.desired, kind):
            raise TypeError(f"step {self}: desired is {type(self.desired).__name__}, not {kind.__name__}")
        return self.desired

    def observed_as(self, kind: type[_T]) -> _T:
        """`observed` as the kind the step's action on its resource acts on (see desired_as)."""
        if not isinstance(self.observed, kind):
            raise TypeError(f"step {self}: observed is {type(self.observed).__name__}, not {kind.__name__}")
        return self.observed

    def __str__(self) -> str:
        text = f"#{self.number} {self.resource} {self.action.value}"
        if self.reason:
            text += f" ({self.reason})"
        if self.delay:
            text += f" in {self.delay:g}s"
        if self.after:
            text += " after " + ", ".join(str(e) for e in self.after)
        return text


@dataclass(frozen=True)
class Plan:
    """Steps in an order where every step comes after the steps it waits for."""

    steps: tuple[Step, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        lines = [str(s) for s in self.steps] + [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def step(self, number: int) -> Step:
        return next(s for s in self.steps if s.number == number)

    def due(self) -> tuple[Plan, float | None]:
        """The steps to run now, and in how many seconds the first postponed one is due.

        A step with a delay is left for a later pass (a reconcile must not hold its key while
        a restart backs off), and so is every step that requires it; the later pass computes
        what is left of the delay from the observed exit time."""
        delayed = [s.number for s in self.steps if s.delay > 0]
        if not delayed:
            return self, None
        return self.without(delayed), min(s.delay for s in self.steps if s.delay > 0)

    def without(self, numbers) -> Plan:
        """The plan without these steps and every step that requires one of them; an edge
        that does not require its step is dropped with it."""
        left_out = set(numbers)
        if not left_out:
            return self
        for step in self.steps:
            if any(e.required and e.after in left_out for e in step.after):
                left_out.add(step.number)
        kept = tuple(dataclasses.replace(s, after=tuple(e for e in s.after
                                                         if e.after not in left_out))
                     for s in self.steps if s.number not in left_out)
        return Plan(kept, self.warnings)
