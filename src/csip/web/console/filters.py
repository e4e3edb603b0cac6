"""Jinja filters of the console: times, numbers and durations as an operator reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def when(epoch: Any) -> str:
    if epoch is None or epoch == "":
        return "—"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(epoch: Any, now: Any) -> str:
    if epoch is None:
        return "never"
    seconds = int(float(now) - float(epoch))
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def minutes(seconds: Any) -> str:
    if seconds is None:
        return "—"
    return f"{int(seconds) // 60} min"


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "ago": ago,
    "number": number,
    "minutes": minutes,
}
