"""Durations (`1m30s`) and byte sizes (`1.5G`) as compose-go reads them."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                     "h": 3600.0, "d": 86400.0, "w": 604800.0}
_BYTES = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)
_BYTE_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_duration(text: str) -> float:
    """'1m30s' -> 90.0 seconds, as Go's time.ParseDuration (plus d and w); else ValueError."""
    text = text.strip()
    if text == "0":
        return 0.0  # the one unitless duration Go accepts
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 10s, 1m30s, 500ms)")
    return sign * total


def parse_bytes(value: int | float | str) -> int:
    """'1.5G' -> 1610612736; ints pass through; raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError("must be a byte size, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    match = _BYTES.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a byte size (e.g. 512m, 1.5G)")
    return int(float(match.group(1)) * _BYTE_FACTOR[match.group(2).lower()])
