"""RFC 3339 timestamps with nanoseconds, as conmon and runc write them."""

from __future__ import annotations

import datetime as dt
import re

_FRACTION = re.compile(r"(\.\d{1,9})")


def parse(text: str) -> dt.datetime:
    """Parse `2026-01-02T03:04:05.123456789+00:00` or `...Z`; precision is cut to microseconds."""
    text = text.strip().replace("Z", "+00:00")
    text = _FRACTION.sub(lambda m: m.group(1)[:7].ljust(7, "0"), text, count=1)
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
