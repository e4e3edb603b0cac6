"""The one clock the server owns; tests and the conformance harness move it."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock seconds since the epoch, plus an offset that tests can set or advance.

    Everything that needs "now" (EventStatus, Time, registration stamps, cache boundaries)
    asks this object, so moving it moves the whole server consistently.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def now_int(self) -> int:
        return int(self.now())

    def set(self, epoch_seconds: float) -> None:
        self.offset = epoch_seconds - time.time()

    def advance(self, seconds: float) -> None:
        self.offset += seconds
