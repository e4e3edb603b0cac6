"""A utility program and its events, as neither standard spells them.

One program, many faces: the same event is an OpenADR 3 event for aggregators (VENs) and a
schedule of IEEE 2030.5 DERControls for the directly connected devices of every enrolled
group. This module holds the meaning both faces share; `openadr/convert.py` and
`sep2/convert.py` only translate it. Pure: times are epoch seconds, `now` is passed in.

Terms (OpenADR 3.1.0 Definition, "event", "interval", "intervalPeriod", "targets"):

* an **event** has consecutive **intervals**; each has a start, a duration, an optional
  randomizeStart and **payloads** (a type such as ``DISPATCH_SETPOINT`` and its values);
* a **payload descriptor** gives a payload type's units (``KW``, ``PERCENT`` ...);
* **targets** are names; an event with none reaches everyone enrolled in the program;
* an **enrollment** puts one 2030.5 group (a FunctionSetAssignments node) in a program,
  under the group's target name, with the DERProgram that carries the program's controls
  for that group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

#: A payload value as OpenADR carries it (a Point is kept as an (x, y) pair).
Value = bool | int | float | str | tuple[float, float]


@dataclass(frozen=True, slots=True)
class PayloadDescriptor:
    """eventPayloadDescriptor: how to read one payload type's values."""

    payload_type: str
    units: str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    type: str
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Interval:
    """One interval of an event, with its own absolute start (the converter resolved it)."""

    id: int
    start: int
    duration: int
    payloads: tuple[Payload, ...]
    randomize_start: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.duration

    def payload(self, payload_type: str) -> Payload | None:
        return next((p for p in self.payloads if p.type == payload_type), None)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    program_id: str
    name: str
    intervals: tuple[Interval, ...]
    targets: frozenset[str] = frozenset()
    descriptors: tuple[PayloadDescriptor, ...] = ()
    priority: int | None = None

    def units(self, payload_type: str) -> str | None:
        found = next((d for d in self.descriptors if d.payload_type == payload_type), None)
        return found.units if found is not None else None

    @property
    def start(self) -> int | None:
        return min((i.start for i in self.intervals), default=None)

    @property
    def end(self) -> int | None:
        return max((i.end for i in self.intervals), default=None)

    def reaches(self, target: str) -> bool:
        """An untargeted event reaches every enrolled group; a targeted one only those named."""
        return not self.targets or target in self.targets


@dataclass(frozen=True, slots=True)
class Program:
    """What the utility decides once per program, for every event in it.

    `simple_levels` maps an OpenADR ``SIMPLE`` level (0-3) to the DERControlBase a device
    gets for it (absent level: nothing is sent, the DefaultDERControl applies).
    `notices` are the words of the messages sent before an event starts and when it ends.
    """

    id: str
    name: str
    primacy: int = 10
    simple_levels: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    notice_before: str | None = None
    notice_after: str | None = None
    notice_lead: int = 3600
    message_originator: str = "utility"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One 2030.5 group in one program: its target name and the DERProgram it is given."""

    group_id: int
    target: str
    der_program_id: int


#: Seasons as (first month, last month), inclusive, wrapping over the new year: the utility's
#: summer (May-October) and winter (November-April) unless a program says otherwise.
DEFAULT_SEASONS: tuple[tuple[int, int], ...] = ((5, 10), (11, 4))


@dataclass(frozen=True, slots=True)
class ProgramTerms:
    """What a program promises its customers (issue 12 item 6); None: no such limit.

    `reserve_floor_percent` is the least backup reserve every battery keeps (percent of its
    usable energy); the others limit the events the utility may call.
    """

    reserve_floor_percent: float | None = None
    max_event_seconds: int | None = None
    max_events_per_month: int | None = None
    max_events_per_season: int | None = None
    min_notice_seconds: int | None = None
    seasons: tuple[tuple[int, int], ...] = DEFAULT_SEASONS


def _season(month: int, seasons: tuple[tuple[int, int], ...]) -> int | None:
    for index, (first, last) in enumerate(seasons):
        inside = first <= month <= last if first <= last else (month >= first or month <= last)
        if inside:
            return index
    return None


def _season_year(month: int, year: int, season: tuple[int, int]) -> int:
    """The year a season instance starts in (a winter from November belongs to that year)."""
    first, last = season
    return year - 1 if first > last and month <= last else year


def broken_terms(
    start: int,
    end: int,
    terms: ProgramTerms,
    others: Sequence[int],
    now: int,
    tz: tzinfo,
) -> list[str]:
    """The terms an event from `start` to `end` would break, each named as the admin API
    spells it, with the numbers. `others` are the starts of the program's other live events;
    months and seasons are the utility's local ones (`tz`)."""
    broken = []
    if terms.max_event_seconds is not None and end - start > terms.max_event_seconds:
        broken.append(f"max_event_seconds: {end - start} s > {terms.max_event_seconds} s")
    if terms.min_notice_seconds is not None and start - now < terms.min_notice_seconds:
        notice = max(0, start - now)
        broken.append(f"min_notice_seconds: {notice} s notice < {terms.min_notice_seconds} s")
    local = datetime.fromtimestamp(start, tz)
    dates = [datetime.fromtimestamp(s, tz) for s in others]
    if terms.max_events_per_month is not None:
        same = 1 + sum(1 for d in dates if (d.year, d.month) == (local.year, local.month))
        if same > terms.max_events_per_month:
            broken.append(
                f"max_events_per_month: {same} events in {local:%Y-%m} > "
                f"{terms.max_events_per_month}"
            )
    season = _season(local.month, terms.seasons)
    if terms.max_events_per_season is not None and season is not None:
        bounds = terms.seasons[season]
        key = _season_year(local.month, local.year, bounds)
        same = 1 + sum(
            1
            for d in dates
            if _season(d.month, terms.seasons) == season
            and _season_year(d.month, d.year, bounds) == key
        )
        if same > terms.max_events_per_season:
            broken.append(
                f"max_events_per_season: {same} events in the season of months "
                f"{bounds[0]}-{bounds[1]} from {key} > {terms.max_events_per_season}"
            )
    return broken
