"""An aggregator's capacity from what its VEN reports (issue 12 item 5).

csip does not see an aggregator's batteries: its VEN reports on them over OpenADR, with the
storage payload types of the OpenADR 3.1.0 report enumerations, per resource and interval:

* ``STORAGE_USABLE_CAPACITY``: the energy the storage holds when full (units KWH or WH);
* ``STORAGE_CHARGE_LEVEL``: how full it is (units PERCENT, 0.0-1.0 as the enumeration and
  the units table define it);
* ``STORAGE_MAX_DISCHARGE_POWER`` / ``STORAGE_MAX_CHARGE_POWER``: the most it can sustain
  (units KW or W);
* ``STORAGE_DISPATCH_FORECAST``: the stored energy it expects could be dispatched in the
  interval (units KWH or WH).

Each resource is then counted as a battery is (`domain.fleet`), with the program's reserve
floor as its reserve (csip does not know the customers' own):

* **energy above reserve** = (charge level - floor) x usable capacity; where the VEN also
  says what could be dispatched, the lesser of the two (the VEN knows its customers'
  reserves, csip the program's floor); with only the dispatch forecast, that;
* **power** = the smaller of the maximum discharge power and that energy spread over the
  duration asked;
* the resource's state at a moment is, per payload type, the value of the latest interval
  that began by then (so intervals the VEN reports ahead, readingType FORECAST, move the
  forecast; otherwise the last value holds, as a battery with no history keeps its charge);
* a resource is **not counted** (adds zero, flagged with why) when its newest interval
  ended more than `MAX_AGE` before now, or when it gave neither a charge level with a usable
  capacity nor a dispatch forecast, or no maximum discharge power.

Pure: times are epoch seconds, passed in; energy in Wh, power in W, levels in percent 0-100.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from csip.domain.fleet import HOURS_PER_DAY, CapacityPoint, forecast_starts

USABLE = "STORAGE_USABLE_CAPACITY"
LEVEL = "STORAGE_CHARGE_LEVEL"
MAX_DISCHARGE = "STORAGE_MAX_DISCHARGE_POWER"
MAX_CHARGE = "STORAGE_MAX_CHARGE_POWER"
DISPATCHABLE = "STORAGE_DISPATCH_FORECAST"
#: The report payload types an aggregator's capacity is read from (3.1.0 enumerations).
STORAGE_TYPES = (USABLE, LEVEL, MAX_DISCHARGE, MAX_CHARGE, DISPATCHABLE)
#: What each type measures: energy (Wh), power (W) or a level (percent).
ENERGY, POWER, PERCENT = "energy", "power", "percent"
QUANTITY: Mapping[str, str] = {
    USABLE: ENERGY,
    LEVEL: PERCENT,
    MAX_DISCHARGE: POWER,
    MAX_CHARGE: POWER,
    DISPATCHABLE: ENERGY,
}
#: A resource whose newest interval ended longer ago than this is not counted (seconds).
MAX_AGE = 2 * 3600

STALE_REPORT = "no storage report in the last 2 hours"
NO_STORAGE_ENERGY = (
    "neither STORAGE_CHARGE_LEVEL with STORAGE_USABLE_CAPACITY nor STORAGE_DISPATCH_FORECAST"
)
NO_DISCHARGE = "no STORAGE_MAX_DISCHARGE_POWER"


@dataclass(frozen=True, slots=True)
class StorageValue:
    """One storage payload of one resource for one interval, in Wh, W or percent."""

    resource: str
    payload_type: str
    start: int
    end: int
    value: float
    #: When the report carrying it was written: a later report wins for the same interval.
    reported_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ResourceState:
    """What a resource's reports say at one moment (None: not reported)."""

    usable_wh: float | None = None
    level_percent: float | None = None
    max_discharge_w: float | None = None
    max_charge_w: float | None = None
    dispatchable_wh: float | None = None


@dataclass(frozen=True, slots=True)
class VenCapacity:
    """A VEN's capacity now and at each of the next whole hours, the resources it reported
    and those not counted, each with why."""

    now: CapacityPoint
    forecast: tuple[CapacityPoint, ...]
    resources: int
    duration: int
    program_floor: float
    unavailable: Mapping[str, str]


_FIELD = {
    USABLE: "usable_wh",
    LEVEL: "level_percent",
    MAX_DISCHARGE: "max_discharge_w",
    MAX_CHARGE: "max_charge_w",
    DISPATCHABLE: "dispatchable_wh",
}


def state_at(values: Sequence[StorageValue], at: int) -> ResourceState:
    """Per payload type, the value of the latest interval begun by `at` (values of one
    resource; the later report wins for the same interval start)."""
    best: dict[str, StorageValue] = {}
    for value in values:
        if value.start > at:
            continue
        seen = best.get(value.payload_type)
        if seen is None or (value.start, value.reported_at) >= (seen.start, seen.reported_at):
            best[value.payload_type] = value
    return ResourceState(**{_FIELD[t]: v.value for t, v in best.items() if t in _FIELD})


def energy_above_floor_wh(state: ResourceState, program_floor: float) -> float | None:
    """None: the state says nothing about energy."""
    found: list[float] = []
    if state.usable_wh is not None and state.level_percent is not None:
        found.append(max(0.0, (state.level_percent - program_floor) / 100 * state.usable_wh))
    if state.dispatchable_wh is not None:
        found.append(max(0.0, state.dispatchable_wh))
    return min(found) if found else None


def _point(
    states: Iterable[ResourceState], at: int, program_floor: float, per_second: float
) -> CapacityPoint:
    energy = power = 0.0
    counted = 0
    for state in states:
        e = energy_above_floor_wh(state, program_floor)
        if e is None or state.max_discharge_w is None:
            continue
        counted += 1
        energy += e
        power += min(max(0.0, state.max_discharge_w), e * per_second)
    return CapacityPoint(at, energy, power, counted)


def ven_capacity(
    values: Iterable[StorageValue],
    now: int,
    *,
    duration: int = 3600,
    program_floor: float = 0.0,
    hours: int = HOURS_PER_DAY,
    max_age: int = MAX_AGE,
) -> VenCapacity:
    """Sum over the VEN's resources, now and at the start of each of the next `hours`."""
    by_resource: dict[str, list[StorageValue]] = {}
    for value in values:
        by_resource.setdefault(value.resource, []).append(value)
    unavailable: dict[str, str] = {}
    counted: dict[str, list[StorageValue]] = {}
    for name, mine in sorted(by_resource.items()):
        begun = [v for v in mine if v.start <= now]
        state = state_at(mine, now)
        if not begun or now - max(v.end for v in begun) > max_age:
            unavailable[name] = STALE_REPORT
        elif energy_above_floor_wh(state, program_floor) is None:
            unavailable[name] = NO_STORAGE_ENERGY
        elif state.max_discharge_w is None:
            unavailable[name] = NO_DISCHARGE
        else:
            counted[name] = mine
    per_second = 3600 / duration
    starts = forecast_starts(now, hours)
    return VenCapacity(
        now=_point((state_at(v, now) for v in counted.values()), now, program_floor, per_second),
        forecast=tuple(
            _point((state_at(v, t) for v in counted.values()), t, program_floor, per_second)
            for t in starts
        ),
        resources=len(by_resource),
        duration=duration,
        program_floor=program_floor,
        unavailable=unavailable,
    )
