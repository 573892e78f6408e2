"""Where the agent's socket is and how talking to it fails: what every client needs, at the
cost of no import (the quick verbs start in tens of milliseconds)."""

from __future__ import annotations

import os

SOCKET_NAME = "agent.sock"


class AgentUnavailable(Exception):
    """Nothing answers on the socket."""


class ApiError(Exception):
    """The agent refused a request; `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def socket_path(run_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(run_dir), SOCKET_NAME)
