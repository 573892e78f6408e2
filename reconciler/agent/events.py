"""Events the agent publishes (project submitted, step done, ...) and their fan-out to streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One line of `GET /v1/events`: `type` is project/step/reconcile/container, `status` what
    happened (for a container, docker's action: create, start, die, destroy, ...)."""

    type: str
    project: str
    status: str
    resource: str = ""
    action: str = ""
    message: str = ""
    time: float = dataclasses.field(default_factory=time.time)
    attributes: dict = dataclasses.field(default_factory=dict)  # container events: name, image, ...

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if not self.attributes:
            del data["attributes"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        data = json.loads(line)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class EventBus:
    """Every subscriber gets its own bounded queue; a subscriber too slow to keep up loses
    the oldest events rather than slowing the reconciler."""

    def __init__(self, backlog: int = 1000) -> None:
        self.backlog = backlog
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.published = 0
        self.dropped = 0

    def publish(self, event: Event) -> None:
        self.published += 1
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self.backlog)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
