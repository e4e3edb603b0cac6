"""Who sees what in OpenADR 3.1.0, when an event is over, and MQTT topic names. Pure Python.

Privacy (3.1.0): a BL client sees everything. A VEN client sees its own ven, resources,
reports and subscriptions (matched on the clientID of its token), and the programs and events
that are untargeted or whose targets meet the targets the BL granted to its ven and
resources. In what it sees, it finds only the targets it was granted (others' targets would
tell it who else is in the program). The same rules pick the recipients of notifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

PROGRAM, EVENT, REPORT, SUBSCRIPTION, VEN, RESOURCE = (
    "PROGRAM",
    "EVENT",
    "REPORT",
    "SUBSCRIPTION",
    "VEN",
    "RESOURCE",
)
KINDS = (PROGRAM, EVENT, REPORT, SUBSCRIPTION, VEN, RESOURCE)
OPERATIONS = ("CREATE", "UPDATE", "DELETE")

SCOPES = (
    "read_all",
    "read_targets",
    "read_ven_objects",
    "write_programs",
    "write_events",
    "write_reports",
    "write_subscriptions",
    "write_vens",
)
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "bl": (
        "read_all",
        "read_targets",
        "read_ven_objects",
        "write_programs",
        "write_events",
        "write_subscriptions",
        "write_vens",
    ),
    "ven": (
        "read_targets",
        "read_ven_objects",
        "write_reports",
        "write_subscriptions",
        "write_vens",
    ),
}
#: The clientID csip writes its own reports under (the program engine's answers from 2030.5
#: groups). No token may carry it: a VEN whose token said "csip" would see and own them.
CSIP_CLIENT_ID = "csip"
#: Scopes that only a business-logic client would hold (decides the role of external tokens).
BL_ONLY_SCOPES = frozenset({"read_all", "write_programs", "write_events"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: clientID from the token, its role and granted scopes."""

    client_id: str
    role: str
    scopes: frozenset[str]

    @property
    def is_bl(self) -> bool:
        return self.role == "bl"

    def has(self, scope: str) -> bool:
        if scope in self.scopes:
            return True
        # read_all is the BL's superset of the two narrower read scopes
        return scope in ("read_targets", "read_ven_objects") and "read_all" in self.scopes


@dataclass(frozen=True)
class VenView:
    """What a VEN client may see: its ven ids and the targets granted to them."""

    client_id: str
    ven_ids: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()


@dataclass
class Obj:
    """The rule-relevant part of a stored object."""

    kind: str
    id: str
    targets: Sequence[str] = ()
    program_id: str | None = None
    client_id: str | None = None
    ven_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def targets_meet(object_targets: Iterable[str], granted: frozenset[str]) -> bool:
    """Untargeted objects are for everyone; targeted ones need one target in common."""
    wanted = list(object_targets)
    return not wanted or any(t in granted for t in wanted)


def visible(obj: Obj, view: VenView | None, program: Obj | None = None) -> bool:
    """May this viewer (None: a BL) see the object? Events also need their program visible."""
    if view is None:
        return True
    if obj.kind == PROGRAM:
        return targets_meet(obj.targets, view.targets)
    if obj.kind == EVENT:
        if program is not None and not targets_meet(program.targets, view.targets):
            return False
        return targets_meet(obj.targets, view.targets)
    if obj.kind == RESOURCE:
        return obj.client_id == view.client_id or (obj.ven_id in view.ven_ids)
    return obj.client_id == view.client_id


def shown_targets(obj: Obj, view: VenView | None) -> list[str]:
    """The targets a viewer finds in a program or event: only those granted to it."""
    if view is None or obj.kind not in (PROGRAM, EVENT):
        return list(obj.targets)
    return [t for t in obj.targets if t in view.targets]


def query_targets_match(
    object_targets: Sequence[str], query: Sequence[str], granted: frozenset[str] | None = None
) -> bool:
    """The ``targets`` query parameter (or a subscription's targets) narrows a list to objects
    carrying one of them.

    ``granted``: for a VEN looking at programs or events, the targets it was granted (None for
    a BL). Only those of its names count: it never sees the other targets of what it reads, so
    matching them would let it probe them (asking for a customer's name would answer whether an
    event names it). A name it was not granted finds nothing, exactly as an unused name does.
    """
    if not query:
        return True
    if granted is not None:
        query = [t for t in query if t in granted]
    return any(t in object_targets for t in query)


# ---- time ----------------------------------------------------------------------------
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DURATION = re.compile(
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
#: "P9999Y" means for ever (User Guide).
INFINITE = float("inf")


def is_datetime(text: str) -> bool:
    return bool(_DATETIME.match(text))


def is_duration(text: str) -> bool:
    return bool(_DURATION.match(text))


def parse_datetime(text: str) -> float | None:
    """RFC 3339 to epoch seconds (None when it cannot be read, e.g. a leap second)."""
    if not _DATETIME.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).timestamp()
    except ValueError:
        return None


def parse_duration(text: str) -> float | None:
    """ISO 8601 duration in seconds; years as 365 days, months as 30; P9999Y is infinite."""
    match = _DURATION.match(text)
    if not match:
        return None
    sign, years, months, days, unit, hours, minutes, seconds = match.groups()
    if years and int(years) >= 9999:
        return INFINITE
    total = (
        int(years or 0) * 365 * 86400
        + int(months or 0) * 30 * 86400
        + int(days or 0) * (7 if unit == "W" else 1) * 86400
        + int(hours or 0) * 3600
        + int(minutes or 0) * 60
        + float(seconds or 0)
    )
    return -total if sign else total


def event_end(event: dict[str, object]) -> float | None:
    """When an event is over (epoch seconds), INFINITE, or None when it cannot be known.

    Intervals without their own start follow the previous one; each lasts its own duration,
    else the event's intervalPeriod duration. An event ``duration`` overrides the sum.
    """
    period = event.get("intervalPeriod")
    period = period if isinstance(period, dict) else {}
    start = parse_datetime(str(period["start"])) if period.get("start") else None
    default_duration = parse_duration(str(period["duration"])) if period.get("duration") else None
    intervals = event.get("intervals")
    cursor = start
    end: float | None = None
    if isinstance(intervals, list):
        for interval in intervals:
            own = interval.get("intervalPeriod") if isinstance(interval, dict) else None
            own = own if isinstance(own, dict) else {}
            if own.get("start"):
                cursor = parse_datetime(str(own["start"]))
            length = parse_duration(str(own["duration"])) if own.get("duration") else None
            if length is None:
                length = default_duration
            if cursor is None or length is None:
                return None
            cursor = cursor + length
            end = cursor if end is None else max(end, cursor)
            if start is None:
                start = cursor - length
    if event.get("duration") and start is not None:
        total = parse_duration(str(event["duration"]))
        if total is not None:
            return start + total
    if end is None and start is not None and default_duration is not None:
        return start + default_duration
    return end


def is_active(event: dict[str, object], now: float) -> bool:
    """``active=true`` keeps events that have not transpired (unknown ends count as active)."""
    end = event_end(event)
    return end is None or end > now


# ---- MQTT topics -----------------------------------------------------------------------
@dataclass(frozen=True)
class Topics:
    """Topic names of one family: one per operation, and ALL (a single-level wildcard)."""

    base: str
    with_create: bool = True

    def name(self, operation: str) -> str:
        return f"{self.base}/{operation}"

    def as_json(self) -> dict[str, str]:
        topics = {op: self.name(op) for op in OPERATIONS if op != "CREATE" or self.with_create}
        topics["ALL"] = f"{self.base}/+"
        return topics


_FAMILY = {
    PROGRAM: "programs",
    EVENT: "events",
    REPORT: "reports",
    SUBSCRIPTION: "subscriptions",
    VEN: "vens",
    RESOURCE: "resources",
}


def kind_topics(prefix: str, kind: str) -> Topics:
    """BL topics: every object of a kind (programs, events, reports ...)."""
    return Topics(f"{prefix}/{_FAMILY[kind]}")


def program_topics(prefix: str, program_id: str) -> Topics:
    return Topics(f"{prefix}/programs/{program_id}", with_create=False)


def program_event_topics(prefix: str, program_id: str) -> Topics:
    return Topics(f"{prefix}/programs/{program_id}/events")


def ven_topics(prefix: str, ven_id: str, kind: str | None = None) -> Topics:
    """A VEN's private topics: its ven (kind None) or what it may see of a kind."""
    if kind is None:
        return Topics(f"{prefix}/vens/{ven_id}", with_create=False)
    return Topics(f"{prefix}/vens/{ven_id}/{_FAMILY[kind]}")


def bl_topic_names(prefix: str, obj: Obj, operation: str) -> list[str]:
    """Where the BL's view of a change is published."""
    names = [kind_topics(prefix, obj.kind).name(operation)]
    if obj.kind == PROGRAM and operation != "CREATE":
        names.append(program_topics(prefix, obj.id).name(operation))
    if obj.kind == EVENT and obj.program_id:
        names.append(program_event_topics(prefix, obj.program_id).name(operation))
    if obj.kind == VEN and operation != "CREATE":
        names.append(ven_topics(prefix, obj.id).name(operation))
    return names


def ven_topic_name(prefix: str, ven_id: str, obj: Obj, operation: str) -> str | None:
    """Where one VEN's view of a change is published (None: the kind has no VEN topic)."""
    if obj.kind == VEN:  # its own topic, vens/{venID}/..., is published with the BL view
        return None
    return ven_topics(prefix, ven_id, obj.kind).name(operation)
