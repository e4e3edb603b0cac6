"""OpenADR 3.1.0 JSON to the protocol-neutral event model: the only translator on this side.

The VTN stores events as the client sent them (that is what VENs read back); the program
engine reads them through `event()` here. Interval times are resolved the way the 3.1.0
Definition and User Guide describe them:

* an interval's own ``intervalPeriod`` fields override the event's ``intervalPeriod``;
* an interval without its own start follows the previous interval (the first starts at the
  event's start); each lasts its own duration, else the event's;
* an event without a start begins when it is planned (`now`);
* ``P9999Y`` (for ever) is as long as a 2030.5 duration can be (UInt32 seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from csip.domain.programs import Event, Interval, Payload, PayloadDescriptor, Value
from csip.errors import InvalidValues
from csip.openadr.rules import parse_datetime, parse_duration

#: The longest duration a DERControl can carry (DateTimeInterval.duration is a UInt32).
LONGEST = 2**32 - 1


def _period(source: Any) -> Mapping[str, Any]:
    return source if isinstance(source, Mapping) else {}


def _seconds(text: Any, what: str) -> int | None:
    if text is None:
        return None
    seconds = parse_duration(str(text))
    if seconds is None:
        raise InvalidValues(f"{what}: {text!r} is not an ISO 8601 duration")
    return LONGEST if math.isinf(seconds) else round(seconds)


def _value(value: Any) -> Value:
    if isinstance(value, Mapping):
        return (float(value["x"]), float(value["y"]))
    if isinstance(value, bool | int | float | str):
        return value
    raise InvalidValues(f"payload value {value!r} is not a number, string, boolean or point")


def descriptors(*sources: Mapping[str, Any] | None) -> tuple[PayloadDescriptor, ...]:
    """eventPayloadDescriptors of the event, then of its program (the event's win)."""
    found: dict[str, PayloadDescriptor] = {}
    for source in sources:
        for item in (source or {}).get("payloadDescriptors") or ():
            kind = item.get("objectType", "EVENT_PAYLOAD_DESCRIPTOR")
            if kind != "EVENT_PAYLOAD_DESCRIPTOR" or item.get("payloadType") in found:
                continue
            found[item["payloadType"]] = PayloadDescriptor(
                item["payloadType"], item.get("units"), item.get("currency")
            )
    return tuple(found.values())


def intervals(event: Mapping[str, Any], now: int) -> tuple[Interval, ...]:
    period = _period(event.get("intervalPeriod"))
    start = parse_datetime(str(period["start"])) if period.get("start") else None
    cursor = round(start) if start is not None else now
    default_duration = _seconds(period.get("duration"), "intervalPeriod.duration")
    default_random = _seconds(period.get("randomizeStart"), "intervalPeriod.randomizeStart")
    found = []
    items: Sequence[Any] = event.get("intervals") or ()
    for item in items:
        own = _period(item.get("intervalPeriod"))
        what = f"interval {item.get('id')}"
        if own.get("start"):
            own_start = parse_datetime(str(own["start"]))
            if own_start is None:
                raise InvalidValues(f"{what}: start {own['start']!r} is not a date-time")
            cursor = round(own_start)
        duration = _seconds(own.get("duration"), f"{what} duration")
        if duration is None:
            duration = default_duration
        if duration is None:
            raise InvalidValues(f"{what} has no duration (nor has the event's intervalPeriod)")
        random = _seconds(own.get("randomizeStart"), f"{what} randomizeStart")
        payloads = tuple(
            Payload(str(p["type"]), tuple(_value(v) for v in p.get("values") or ()))
            for p in item.get("payloads") or ()
        )
        found.append(
            Interval(
                int(item["id"]),
                cursor,
                duration,
                payloads,
                random if random is not None else default_random,
            )
        )
        cursor = min(cursor + duration, 2**62)
    return tuple(found)


def event(wire: Mapping[str, Any], program: Mapping[str, Any] | None, now: int) -> Event:
    """A stored OpenADR event (with its program, for descriptors) as the domain sees it."""
    return Event(
        id=str(wire.get("id", "")),
        program_id=str(wire.get("programID", "")),
        name=str(wire.get("eventName") or wire.get("id") or "event"),
        intervals=intervals(wire, now),
        targets=frozenset(wire.get("targets") or ()),
        descriptors=descriptors(wire, program),
        priority=wire.get("priority"),
    )
