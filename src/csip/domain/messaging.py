"""The Messaging function set (IEEE 2030.5 §10.7): text messages to the devices of a group.

A MessagingProgram belongs to one group (FunctionSetAssignments) like a DERProgram; its
TextMessages are events with a start and a duration, so they carry an EventStatus and are
never deleted: a message withdrawn by the utility is cancelled. The program engine writes the
alerts of OpenADR events (``ALERT_*``) and program notices here; the admin API writes any
other message. Pure: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from csip.domain.der import EventStatus, Status

#: sep.xsd PriorityType.
PRIORITIES = {0: "low", 1: "normal", 2: "high", 3: "critical"}


@dataclass(frozen=True, slots=True)
class MessagingProgram:
    id: int
    mrid: str
    group_id: int
    description: str
    locale: str
    primacy: int

    @property
    def href(self) -> str:
        return f"/msg/{self.id}"


@dataclass(frozen=True, slots=True)
class TextMessage:
    id: int
    mrid: str
    program_id: int
    creation_time: int
    start: int
    duration: int
    text: str
    priority: int
    originator: str | None = None
    cancelled_at: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def href(self) -> str:
        return f"/msg/{self.program_id}/txt/{self.id}"


def message_status(message: TextMessage, now: int) -> EventStatus:
    """Scheduled until its start, then active; a cancellation wins from its moment on."""
    if message.cancelled_at is not None and message.cancelled_at <= now:
        return EventStatus(Status.CANCELLED, message.cancelled_at, reason="cancelled")
    if now >= message.start:
        return EventStatus(Status.ACTIVE, message.start)
    return EventStatus(Status.SCHEDULED, message.creation_time)


def is_shown(message: TextMessage, now: int) -> bool:
    """In ActiveTextMessageList: begun, not over and not cancelled."""
    return message_status(message, now).current is Status.ACTIVE and now < message.end


def is_listed(message: TextMessage, now: int) -> bool:
    """In TextMessageList: until it is over (history stays readable through the admin API)."""
    return now < message.end and not (
        message.cancelled_at is not None and message.cancelled_at + 86400 <= now
    )


def next_boundary(messages: Iterable[TextMessage], now: int) -> int | None:
    """The next instant after `now` at which a message's status or listing changes."""
    moments = [
        moment
        for m in messages
        for moment in (
            m.start,
            m.end,
            m.cancelled_at,
            None if m.cancelled_at is None else m.cancelled_at + 86400,
        )
        if moment is not None and moment > now
    ]
    return min(moments, default=None)
