"""The one clock the server owns; tests and the conformance harness move it."""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    """Wall-clock seconds since the epoch, plus an offset that tests can set or advance.

    Everything that needs "now" (EventStatus, Time, registration stamps, cache boundaries)
    asks this object, so moving it moves the whole server consistently. What sleeps until a
    moment of this clock (services/boundaries.py) subscribes to hear that it moved: a sleep
    measured in real seconds would otherwise miss a jump.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._moved: list[Callable[[], None]] = []

    @property
    def offset(self) -> float:
        return self._offset

    @offset.setter
    def offset(self, value: float) -> None:
        self._offset = value
        for listener in self._moved:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` (no arguments, must not block) whenever the clock is moved."""
        self._moved.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._moved:
            self._moved.remove(listener)

    def now(self) -> float:
        return time.time() + self._offset

    def now_int(self) -> int:
        return int(self.now())

    def set(self, epoch_seconds: float) -> None:
        self.offset = epoch_seconds - time.time()

    def advance(self, seconds: float) -> None:
        self.offset = self._offset + seconds
