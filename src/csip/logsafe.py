"""What clients send, made safe to log: one helper for every log line that carries client data.

A value with a newline could otherwise forge a whole log line ("...\\n2026-11-29 INFO admin
token rotated"), and a control sequence could rewrite a terminal. `safe` escapes backslashes,
every C0/C1 control character and the Unicode line separators, and cuts long values short.
"""

from __future__ import annotations

import logging
import re
import time

__all__ = ["Summary", "safe"]

_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: Longest client value a log line carries (characters, before escaping).
MAX_LOGGED = 200


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object, limit: int = MAX_LOGGED) -> str:
    """`value` as one printable line: escaped, and at most `limit` characters of it."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNSAFE.sub(_escape, text)


class Summary:
    """One log line per `interval` seconds for an event that can repeat thousands of times
    (refused connections, timeouts, a busy broker): the first occurrence is logged at once,
    the rest are counted and reported together on the next occurrence past the interval."""

    def __init__(
        self, logger: logging.Logger, level: int, what: str, interval: float = 10.0
    ) -> None:
        self._logger = logger
        self._level = level
        self._what = what
        self._interval = interval
        self._last = -interval
        self._pending = 0
        #: Every occurrence since start (tests and metrics read it).
        self.total = 0

    def note(self, detail: str = "") -> None:
        self.total += 1
        self._pending += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        count, self._pending = self._pending, 0
        self._last = now
        if count == 1:
            self._logger.log(self._level, "%s%s", self._what, f": {detail}" if detail else "")
        else:
            self._logger.log(
                self._level,
                "%s: %d times in the last %.0f s%s",
                self._what,
                count,
                self._interval,
                f" (latest: {detail})" if detail else "",
            )
