"""Telemetry (IEEE 2030.5 metering mirror): MirrorUsagePoints, their MirrorMeterReadings with a
ReadingType each, and the Readings devices post.

The rules here decide what csip accepts, and never guess: a ReadingType must state its unit
(uom), the unit must be one csip knows with a power-of-ten multiplier in the range that makes
sense for it, the enumerations must hold defined values, kind and accumulation must fit the
unit, and a reading's physical value must be possible for its unit (a state of charge of 130 %
is refused, not clipped). Values are kept exactly as sent, integer and multiplier side by
side; the physical value is computed only for display.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from csip.errors import InvalidValues


@dataclass(frozen=True, slots=True)
class Unit:
    symbol: str
    quantity: str
    #: Smallest and largest powerOfTenMultiplier accepted with this unit.
    min_multiplier: int
    max_multiplier: int
    #: Physical limits of a value (None = unbounded).
    lowest: Decimal | None = None
    highest: Decimal | None = None
    energy: bool = False


#: The units csip accepts in a ReadingType (sep.xsd UomType, IEC 61968-9 codes). uom 0 is
#: dimensionless: csip reads it as a percentage (a battery's state of charge), 0..100 %.
UNITS: dict[int, Unit] = {
    0: Unit("%", "percentage (state of charge)", -2, 0, Decimal(0), Decimal(100)),
    5: Unit("A", "current", -3, 3),
    29: Unit("V", "voltage", -3, 3, Decimal(0)),
    33: Unit("Hz", "frequency", -3, 0, Decimal(0), Decimal(1000)),
    38: Unit("W", "real power", -3, 9),
    61: Unit("VA", "apparent power", -3, 9, Decimal(0)),
    63: Unit("var", "reactive power", -3, 9),
    65: Unit("cos\u03b8", "displacement power factor", -4, 0, Decimal(-1), Decimal(1)),
    71: Unit("VAh", "apparent energy", -3, 9, energy=True),
    72: Unit("Wh", "real energy", -3, 9, energy=True),
    73: Unit("varh", "reactive energy", -3, 9, energy=True),
}

#: sep.xsd enumerations ("All other values reserved").
KINDS = {0: "not applicable", 8: "demand", 12: "energy", 37: "power"}  # 3 currency: no unit
PHASES = {
    0: "not applicable",
    32: "C",
    33: "CN",
    40: "CA",
    64: "B",
    65: "BN",
    66: "BC",
    128: "A",
    129: "AN",
    132: "AB",
    224: "ABC",
}
FLOW_DIRECTIONS = {0: "not applicable", 1: "forward", 19: "reverse"}
DATA_QUALIFIERS = {
    0: "not applicable",
    2: "average",
    8: "maximum",
    9: "minimum",
    12: "normal",
    29: "standard deviation of a population",
    30: "standard deviation of a sample",
}
ACCUMULATIONS = {
    0: "not applicable",
    3: "cumulative",
    4: "delta data",
    6: "indicating",
    9: "summation",
    12: "instantaneous",
}
#: Electricity only (0 not applicable, 1 secondary metered, 2 primary metered).
COMMODITIES = {0: "not applicable", 1: "electricity secondary", 2: "electricity primary"}
#: Accumulations that only make sense for an energy register, and for a rate.
_ENERGY_ONLY = {3, 4, 9}
_RATE_ONLY = {6, 12}
#: 2030.5 ServiceKind: csip mirrors electricity.
ELECTRICITY = 0


@dataclass(frozen=True, slots=True)
class ReadingType:
    uom: int
    power_of_ten_multiplier: int = 0
    kind: int | None = None
    phase: int | None = None
    flow_direction: int | None = None
    data_qualifier: int | None = None
    accumulation_behaviour: int | None = None
    commodity: int | None = None
    interval_length: int | None = None

    @property
    def unit(self) -> Unit:
        return UNITS[self.uom]


@dataclass(frozen=True, slots=True)
class Reading:
    """One value as posted: integer and multiplier kept apart; start/duration in seconds."""

    value: int
    power_of_ten_multiplier: int
    start: int
    duration: int | None = None
    quality_flags: int | None = None
    local_id: int | None = None

    @property
    def physical(self) -> Decimal:
        return physical_value(self.value, self.power_of_ten_multiplier)


@dataclass(frozen=True, slots=True)
class MeterReadingDraft:
    """A MirrorMeterReading as a request states it: a ReadingType (declaring or repeating
    it) and/or readings to store."""

    mrid: str
    description: str | None = None
    reading_type: ReadingType | None = None
    readings: tuple[Reading, ...] = ()


@dataclass(frozen=True, slots=True)
class MirrorMeterReading:
    id: int
    mrid: str
    description: str | None
    reading_type: ReadingType


@dataclass(frozen=True, slots=True)
class UsagePointDraft:
    mrid: str
    device_lfdi: str
    role_flags: int
    service_category_kind: int
    status: int
    description: str | None = None
    post_rate: int | None = None
    readings: tuple[MeterReadingDraft, ...] = ()


@dataclass(frozen=True, slots=True)
class MirrorUsagePoint:
    id: int
    end_device_id: int
    device_lfdi: str
    mrid: str
    description: str | None
    role_flags: int
    service_category_kind: int
    status: int
    #: The postRate the device asked for (the server's setting wins when there is one).
    requested_post_rate: int | None = None
    meter_readings: tuple[MirrorMeterReading, ...] = field(default_factory=tuple)

    @property
    def href(self) -> str:
        return f"/mup/{self.id}"


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as the admin view reads it back: where it came from and what it is."""

    mup_mrid: str
    mmr_mrid: str
    description: str | None
    reading_type: ReadingType
    reading: Reading
    received_at: int


def physical_value(value: int, multiplier: int) -> Decimal:
    """value * 10**multiplier, exactly."""
    return Decimal(value).scaleb(multiplier)


def normalize_mrid(mrid: str) -> str:
    return mrid.strip().upper()


def _check_enum(problems: list[str], name: str, value: int | None, known: dict[int, str]) -> None:
    if value is not None and value not in known:
        allowed = ", ".join(str(k) for k in known)
        problems.append(f"{name} {value} is not one csip accepts ({allowed})")


def reading_type_problems(rt: ReadingType) -> list[str]:
    """Everything wrong with a ReadingType; empty when csip can store readings of it."""
    problems: list[str] = []
    unit = UNITS.get(rt.uom)
    if unit is None:
        known = ", ".join(f"{k} ({u.symbol})" for k, u in UNITS.items())
        problems.append(f"uom {rt.uom} is not a unit csip accepts: {known}")
    elif not unit.min_multiplier <= rt.power_of_ten_multiplier <= unit.max_multiplier:
        problems.append(
            f"powerOfTenMultiplier {rt.power_of_ten_multiplier} is not supported with "
            f"{unit.symbol} (uom {rt.uom}): use {unit.min_multiplier}..{unit.max_multiplier}"
        )
    _check_enum(problems, "kind", rt.kind, KINDS)
    _check_enum(problems, "phase", rt.phase, PHASES)
    _check_enum(problems, "flowDirection", rt.flow_direction, FLOW_DIRECTIONS)
    _check_enum(problems, "dataQualifier", rt.data_qualifier, DATA_QUALIFIERS)
    _check_enum(problems, "accumulationBehaviour", rt.accumulation_behaviour, ACCUMULATIONS)
    _check_enum(problems, "commodity", rt.commodity, COMMODITIES)
    if unit is not None:
        if unit.energy and rt.kind in (8, 37):
            problems.append(f"kind {rt.kind} ({KINDS[rt.kind]}) cannot be in {unit.symbol}")
        if not unit.energy and rt.kind == 12:
            problems.append(f"kind 12 (energy) cannot be in {unit.symbol}")
        accumulation = rt.accumulation_behaviour
        if unit.energy and accumulation in _RATE_ONLY:
            problems.append(
                f"accumulationBehaviour {accumulation} ({ACCUMULATIONS[accumulation]}) "
                f"does not fit an energy register in {unit.symbol}"
            )
        if not unit.energy and accumulation in _ENERGY_ONLY:
            problems.append(
                f"accumulationBehaviour {accumulation} ({ACCUMULATIONS[accumulation]}) "
                f"is for energy registers, not {unit.symbol}"
            )
    return problems


def reading_problems(rt: ReadingType, reading: Reading) -> list[str]:
    """What is wrong with one reading of this type (its unit's physical limits)."""
    problems: list[str] = []
    if reading.power_of_ten_multiplier != rt.power_of_ten_multiplier:
        problems.append("a reading's multiplier must be its ReadingType's")
    unit = UNITS.get(rt.uom)
    if unit is None:
        return [*problems, f"uom {rt.uom} is not a unit csip accepts"]
    physical = reading.physical
    if unit.lowest is not None and physical < unit.lowest:
        problems.append(f"{physical} {unit.symbol} is below {unit.lowest} {unit.symbol}")
    if unit.highest is not None and physical > unit.highest:
        problems.append(f"{physical} {unit.symbol} is above {unit.highest} {unit.symbol}")
    if reading.duration is not None and reading.duration < 0:
        problems.append("a reading's duration cannot be negative")
    return problems


def check_reading_type(mrid: str, rt: ReadingType) -> None:
    problems = reading_type_problems(rt)
    if problems:
        raise InvalidValues(f"ReadingType of MirrorMeterReading {mrid}: " + "; ".join(problems))


def check_readings(mrid: str, rt: ReadingType, readings: Iterable[Reading]) -> None:
    """Refuse the whole batch if any reading is impossible or two share one start time."""
    seen: set[int] = set()
    for reading in readings:
        problems = reading_problems(rt, reading)
        if reading.start in seen:
            problems.append(f"two readings start at {reading.start}")
        seen.add(reading.start)
        if problems:
            raise InvalidValues(f"Reading of MirrorMeterReading {mrid}: " + "; ".join(problems))


def check_usage_point(draft: UsagePointDraft) -> None:
    """The MirrorUsagePoint itself: electricity, status 0/1, one entry per MMR mRID."""
    problems: list[str] = []
    if draft.service_category_kind != ELECTRICITY:
        problems.append(
            f"serviceCategoryKind {draft.service_category_kind}: csip mirrors electricity (0)"
        )
    if draft.status not in (0, 1):
        problems.append(f"status {draft.status} must be 0 (off) or 1 (on)")
    mrids = [m.mrid for m in draft.readings]
    if len(set(mrids)) != len(mrids):
        problems.append("the same MirrorMeterReading mRID appears twice")
    if problems:
        raise InvalidValues(f"MirrorUsagePoint {draft.mrid}: " + "; ".join(problems))


def effective_post_rate(
    device_rate: int | None, default_rate: int | None, requested: int | None
) -> int | None:
    """The postRate a MirrorUsagePoint shows: the utility's per-device setting, else its
    global default, else what the device asked for (2030.5: the server MAY modify it)."""
    for rate in (device_rate, default_rate, requested):
        if rate is not None:
            return rate
    return None
