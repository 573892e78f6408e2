"""Waiting on a condition the system reaches by itself, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time


def wait_for(predicate, timeout: float = 90.0, what: str = "condition", interval: float = 0.1):
    """The predicate's first true value; AssertionError naming `what` once `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def until(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """wait_for inside an event loop: the predicate (plain or a coroutine function) is asked
    again every `interval` without blocking the loop the system under test runs on."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
