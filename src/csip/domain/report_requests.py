"""When and how csip reports on an event (program engine, item 5). Pure: `now` is passed in.

An OpenADR event asks for reports with ``reportDescriptors`` (OpenADR 3.1.0 reportDescriptor:
payloadType, readingType, units, targets, aggregate, startInterval, numIntervals, historical,
frequency, repeat). csip answers such an event for its enrolled 2030.5 groups, as its own
client, with *one* report that grows as the event's intervals begin (`domain.answers`):

* any non-empty ``reportDescriptors`` asks; an event without them gets no csip report;
* descriptor ``targets`` narrow the groups reported to those whose target name is listed
  (no descriptor with targets: every group the event reached);
* ``aggregate`` true on a descriptor: one resource ``AGGREGATED_REPORT`` over the devices of
  every reported group instead of one per group (the name the 3.1.0 resourceName definition
  gives an aggregation of more than one resource);
* a descriptor asking for a storage capacity payload (``CAPACITY_TYPES``) adds it to each
  reported group's interval in progress, from the fleet capacity of the group's devices
  (domain.fleet.storage_figures); intervals that have ended keep what was reported while they
  ran;
* startInterval / numIntervals / historical / frequency / repeat are not scheduled one report
  object each: csip keeps one report per event and updates it in place at every interval
  start, which holds every historical interval any such schedule asks for (a BL reading the
  report, or told by its subscription, finds the intervals so far). Forecasts
  (historical false) csip cannot make and does not pretend to.

The figures come from the group's devices' MirrorUsagePoint readings; `sample` decides which
readings count as the device's active power and state of charge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from csip.domain.answers import Sample
from csip.domain.programs import Event

AGGREGATED = "AGGREGATED_REPORT"
#: Storage payload types (OpenADR 3.1.0 report enumerations) csip reports for its groups when
#: asked, from the fleet's capacity: usable energy, energy above reserve that could be
#: dispatched, and the power the group can sustain for the interval, discharging and charging.
CAPACITY_TYPES = frozenset(
    {
        "STORAGE_USABLE_CAPACITY",
        "STORAGE_DISPATCH_FORECAST",
        "STORAGE_MAX_DISCHARGE_POWER",
        "STORAGE_MAX_CHARGE_POWER",
    }
)
#: Readings and responses that arrive this long after an event ended still update its report
#: (devices post at their postRate, often minutes after the fact); later ones are history.
GRACE_SECONDS = 3600

#: MirrorUsagePoint roleFlags bit 3: the mirror is a DER's (IEEE 2030.5 RoleFlagsType).
ROLE_DER = 0x08
#: ReadingType uom: W (real power) and 0, which csip reads as a state of charge in %.
UOM_W, UOM_PERCENT = 38, 0
#: Phases meaning "the whole device": absent, not applicable, ABC.
TOTAL_PHASES = (None, 0, 224)
#: dataQualifier values that are not the measured value (maximum, minimum, std deviations).
NOT_A_VALUE = (8, 9, 29, 30)


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What an event's reportDescriptors ask of csip."""

    targets: frozenset[str]
    aggregate: bool
    #: The payloadTypes the descriptors name (the storage capacity ones are added on demand).
    payload_types: frozenset[str] = frozenset()

    def covers(self, target: str | None) -> bool:
        return not self.targets or (target is not None and target in self.targets)


def report_request(descriptors: Any) -> ReportRequest | None:
    """None: the event asks for no reports."""
    if not isinstance(descriptors, list) or not descriptors:
        return None
    targets: set[str] = set()
    types: set[str] = set()
    aggregate = False
    for descriptor in descriptors:
        if not isinstance(descriptor, Mapping):
            continue
        targets.update(str(t) for t in descriptor.get("targets") or ())
        aggregate = aggregate or descriptor.get("aggregate") is True
        if descriptor.get("payloadType") is not None:
            types.add(str(descriptor["payloadType"]))
    return ReportRequest(frozenset(targets), aggregate, frozenset(types))


def in_window(event: Event, now: int) -> bool:
    """Between the first interval's start and GRACE_SECONDS after the last one's end."""
    start, end = event.start, event.end
    return start is not None and end is not None and start <= now <= end + GRACE_SECONDS


def next_boundary(event: Event, now: int) -> int | None:
    """The next server time after `now` at which the report gains an interval (an interval
    starts) or is final (the event ends); None when there is none left."""
    times = [i.start for i in event.intervals] + ([event.end] if event.end is not None else [])
    later = [t for t in times if t > now]
    return min(later) if later else None


@dataclass(frozen=True, slots=True)
class RawReading:
    """One stored reading with what decides what it measures."""

    device_id: int
    role_flags: int
    uom: int
    phase: int | None
    data_qualifier: int | None
    value: int
    multiplier: int
    start: int


def samples(readings: Iterable[RawReading]) -> list[Sample]:
    """Each device's active power and state of charge, without counting anything twice.

    A device that mirrors its DER (roleFlags isDER) is measured there only: its site meter
    would count the household load too. Power is the whole device's (phase absent, 0 or ABC)
    where the device posts one; a device posting only per-phase values gets their sum per
    reading time. Maxima, minima and deviations are not measurements of the mean.
    """
    usable = [r for r in readings if r.data_qualifier not in NOT_A_VALUE]
    der_devices = {r.device_id for r in usable if r.role_flags & ROLE_DER}
    usable = [r for r in usable if r.device_id not in der_devices or r.role_flags & ROLE_DER]
    found: list[Sample] = []
    totals = {r.device_id for r in usable if r.uom == UOM_W and r.phase in TOTAL_PHASES}
    phases: dict[tuple[int, int], float] = {}
    for r in usable:
        value = r.value * 10.0**r.multiplier
        if r.uom == UOM_PERCENT:
            found.append(Sample(r.device_id, r.start, soc_percent=value))
        elif r.uom == UOM_W:
            if r.phase in TOTAL_PHASES:
                found.append(Sample(r.device_id, r.start, watts=value))
            elif r.device_id not in totals:
                key = (r.device_id, r.start)
                phases[key] = phases.get(key, 0.0) + value
    found += [Sample(d, at, watts=w) for (d, at), w in sorted(phases.items())]
    return found


def descendants(parents: Mapping[int, int | None], roots: Iterable[int]) -> dict[int, set[int]]:
    """Per root group, itself and every group below it (a device in a subgroup is in the
    group too: it sees the group's FunctionSetAssignments, CSIP IG §6)."""
    children: dict[int, list[int]] = {}
    for group_id, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(group_id)
    found = {}
    for root in roots:
        seen = {root}
        todo = [root]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        found[root] = seen
    return found


def resource_name(group_id: int, target: str | None) -> str:
    return target or f"group-{group_id}"
