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
from csip.errors import InvalidValues

#: sep.xsd PriorityType.
PRIORITIES = {0: "low", 1: "normal", 2: "high", 3: "critical"}
#: A group's MessagingProgram is made the first time a message is written to it, with these.
DEFAULT_LOCALE = "en-US"
DEFAULT_PRIMACY = 1
#: sep.xsd String20 (originator). textMessage is an unbounded xs:string, but 2030.5 only
#: promises that devices take 100 bytes: a cap keeps one message from filling every poll.
MAX_ORIGINATOR = 20
MAX_TEXT = 1000


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
    #: Who wrote it, for finding its messages again (e.g. "event:<id>" for the program
    #: engine's alerts of one OpenADR event); never on the wire.
    source: str | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def href(self) -> str:
        return f"/msg/{self.program_id}/txt/{self.id}"


def _xml_safe(text: str) -> bool:
    """No character XML 1.0 cannot carry (C0 controls other than tab, newline, return)."""
    return all(ch in "\t\n\r" or ord(ch) >= 0x20 for ch in text) and not any(
        0xD800 <= ord(ch) <= 0xDFFF or ord(ch) in (0xFFFE, 0xFFFF) for ch in text
    )


def check_message(start: int, duration: int, text: str, priority: int, originator: str) -> None:
    """The rules a TextMessage must meet before it is stored (one clear error each): what a
    device would otherwise refuse, or what sep.xsd would reject when it is rendered."""
    if priority not in PRIORITIES:
        raise InvalidValues(f"priority is 0..3 (low, normal, high, critical), not {priority}")
    if not 0 < duration <= 0xFFFFFFFF:
        raise InvalidValues(f"duration is 1..4294967295 seconds, not {duration}")
    if not 0 <= start < 2**62:
        raise InvalidValues(f"start is epoch seconds, not {start}")
    if not text.strip():
        raise InvalidValues("textMessage is empty")
    if len(text) > MAX_TEXT:
        raise InvalidValues(f"textMessage is {len(text)} characters; at most {MAX_TEXT}")
    if len(originator) > MAX_ORIGINATOR:
        raise InvalidValues(
            f"originator is {len(originator)} characters; at most {MAX_ORIGINATOR} (String20)"
        )
    if not (_xml_safe(text) and _xml_safe(originator)):
        raise InvalidValues("textMessage and originator may not hold control characters")


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
