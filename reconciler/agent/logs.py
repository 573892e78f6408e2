"""structlog for the agent process: JSON lines when its output is not a terminal, colours when it is."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(*, json_output: bool | None = None, level: str = "info",
              stream: TextIO | None = None) -> None:
    stream = stream if stream is not None else sys.stdout
    if json_output is None:
        json_output = not stream.isatty()
    renderer = (structlog.processors.JSONRenderer() if json_output
                else structlog.dev.ConsoleRenderer(colors=True))
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if json_output:
        processors.append(structlog.processors.dict_tracebacks)
    structlog.configure(
        processors=processors + [renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
