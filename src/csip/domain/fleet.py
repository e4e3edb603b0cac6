"""Typed, timestamped facts about each DER, and what a battery can give above its reserve.

Devices post their ratings (DERCapability), settings (DERSettings), status (DERStatus),
availability (DERAvailability) and readings (MirrorUsagePoints). csip turns each post into
facts once, when it is written (`sep2/convert.py`), so dispatch, capacity and forecasts never
parse XML. The rules here are the customer battery program's (Customer Battery Energy
Sharing kind):

* **Reserve** is the largest of the program's floor, a per-site override and the device's own
  DERAvailability ``reservePercent``: the owner's backup energy, never lent.
* **Energy above reserve** = (state of charge - reserve) x usable energy, where usable energy
  is the device's setting ``setMaxWh``, else its rating ``rtgMaxWh``.
* **Deliverable power** for an interval = the smaller of its discharge limit (the smallest of
  ``setMaxDischargeRateW``, ``rtgMaxDischargeRateW``, ``setMaxW``, ``rtgMaxW`` that it gave)
  and the energy above reserve spread over the interval.
* A state of charge older than twice the device's post rate is **stale**: such a device counts
  as unavailable (and is flagged) rather than as a guess.
* **Capacity** of a fleet is the sum over its devices of energy above reserve and deliverable
  power; a device that cannot be counted (stale, no state of charge, no ratings) adds zero and
  is listed with the reason.
* The **forecast** moves each device's state of charge hour by hour with its own recent
  behaviour: the mean of its W readings in the same UTC hour of day over the last 7 days
  (positive W drains it, negative charges it, within its charge/discharge limits and 0-100 %).
  A device with no history keeps its state of charge. UTC hours repeat daily like local ones;
  only a DST change shifts the pattern by an hour for the days around it.

Pure: times are epoch seconds, passed in. Powers in W (2030.5 sign: positive is delivered),
percentages 0-100 (2030.5 PerCent hundredths already divided).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, NamedTuple

#: Fact names, as the 2030.5 element each comes from (DER documents) or the reading kind.
RATINGS = ("rtgMaxW", "rtgMaxWh", "rtgMaxChargeRateW", "rtgMaxDischargeRateW")
SETTINGS = ("setMaxW", "setMaxWh", "setMaxChargeRateW", "setMaxDischargeRateW")
STATUS = ("stateOfChargeStatus", "storageModeStatus", "operationalModeStatus")
AVAILABILITY = ("reservePercent", "reserveChargePercent", "statWAvail", "availabilityDuration")
READINGS = ("W", "soc")
FACTS = frozenset((*RATINGS, *SETTINGS, *STATUS, *AVAILABILITY, *READINGS))

#: Each fact's attribute on DerFacts and the attribute holding when its part was posted.
FIELDS: Mapping[str, tuple[str, str]] = {
    "rtgMaxW": ("rtg_max_w", "capability_at"),
    "rtgMaxWh": ("rtg_max_wh", "capability_at"),
    "rtgMaxChargeRateW": ("rtg_max_charge_rate_w", "capability_at"),
    "rtgMaxDischargeRateW": ("rtg_max_discharge_rate_w", "capability_at"),
    "setMaxW": ("set_max_w", "settings_at"),
    "setMaxWh": ("set_max_wh", "settings_at"),
    "setMaxChargeRateW": ("set_max_charge_rate_w", "settings_at"),
    "setMaxDischargeRateW": ("set_max_discharge_rate_w", "settings_at"),
    "stateOfChargeStatus": ("state_of_charge", "status_at"),
    "storageModeStatus": ("storage_mode", "status_at"),
    "operationalModeStatus": ("operational_mode", "status_at"),
    "reservePercent": ("reserve_percent", "availability_at"),
    "reserveChargePercent": ("reserve_charge_percent", "availability_at"),
    "statWAvail": ("stat_w_avail", "availability_at"),
    "availabilityDuration": ("availability_duration", "availability_at"),
    "W": ("w", "w_at"),
    "soc": ("soc", "soc_at_reading"),
}
#: The parts a device posts, each with its own timestamp: document kind -> timestamp attribute.
PARTS: Mapping[str, str] = {
    "DERCapability": "capability_at",
    "DERSettings": "settings_at",
    "DERStatus": "status_at",
    "DERAvailability": "availability_at",
}
#: What the utility assumes when no postRate is set anywhere (2030.5 leaves it to the server).
DEFAULT_POST_RATE = 300
HOURS_PER_DAY = 24
#: Days of history the hour-of-day behaviour is the mean of.
PROFILE_DAYS = 7


@dataclass(frozen=True, slots=True)
class Fact:
    value: float
    at: int


@dataclass(frozen=True, slots=True)
class Capability:
    """DERCapability's energy-storage ratings (W, Wh), multipliers applied."""

    rtg_max_w: float | None = None
    rtg_max_wh: float | None = None
    rtg_max_charge_rate_w: float | None = None
    rtg_max_discharge_rate_w: float | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """DERSettings' limits the installer set (W, Wh), multipliers applied."""

    set_max_w: float | None = None
    set_max_wh: float | None = None
    set_max_charge_rate_w: float | None = None
    set_max_discharge_rate_w: float | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """DERStatus: state of charge (%), storageModeStatus and operationalModeStatus codes."""

    state_of_charge: float | None = None
    storage_mode: int | None = None
    operational_mode: int | None = None


@dataclass(frozen=True, slots=True)
class Availability:
    """DERAvailability: reserves (%), the power it could give now (W) and for how long (s)."""

    reserve_percent: float | None = None
    reserve_charge_percent: float | None = None
    stat_w_avail: float | None = None
    availability_duration: int | None = None


DerDocument = Capability | Settings | Status | Availability
#: Which part (and timestamp) each document's facts update.
PART_OF: Mapping[type[Any], str] = {
    Capability: "capability_at",
    Settings: "settings_at",
    Status: "status_at",
    Availability: "availability_at",
}


@dataclass(frozen=True, slots=True)
class HourSample:
    """One hour of a device's readings: the sum and count of its W readings that started in
    the hour, and its last state of charge in the hour (for the forecast's error)."""

    hour: int  # epoch seconds // 3600
    w_sum: float = 0.0
    w_count: int = 0
    first_start: int | None = None  # of the W readings, to tell a retried batch
    last_start: int | None = None
    soc: float | None = None
    soc_at: int | None = None


@dataclass(frozen=True, slots=True)
class ReadingFacts:
    """What one batch of mirrored readings says: the newest W and state of charge, and the
    batch's contribution to each hour it covers."""

    w: float | None = None
    w_at: int | None = None
    soc: float | None = None
    soc_at: int | None = None
    hours: tuple[HourSample, ...] = ()


@dataclass(frozen=True, slots=True)
class DerFacts:
    """Everything csip knows of one DER, each part with the time it was posted.

    Typed attributes rather than a mapping of names: 100,000 of these are held at once for a
    fleet's capacity, and a slotted object of floats is a fraction of a dict of facts."""

    device_id: int
    rtg_max_w: float | None = None
    rtg_max_wh: float | None = None
    rtg_max_charge_rate_w: float | None = None
    rtg_max_discharge_rate_w: float | None = None
    capability_at: int | None = None
    set_max_w: float | None = None
    set_max_wh: float | None = None
    set_max_charge_rate_w: float | None = None
    set_max_discharge_rate_w: float | None = None
    settings_at: int | None = None
    state_of_charge: float | None = None
    storage_mode: int | None = None
    operational_mode: int | None = None
    status_at: int | None = None
    reserve_percent: float | None = None
    reserve_charge_percent: float | None = None
    stat_w_avail: float | None = None
    availability_duration: int | None = None
    availability_at: int | None = None
    #: The newest mirrored W reading and state of charge, with the time each describes.
    w: float | None = None
    w_at: int | None = None
    soc: float | None = None
    soc_at_reading: int | None = None
    #: The device's MirrorUsagePoint postRate (s): how fresh its state of charge should be.
    post_rate: int = DEFAULT_POST_RATE
    #: The utility's per-site reserve override (percent), set through the admin API.
    site_reserve_percent: float | None = None
    #: Mean W per UTC hour of day (24 values, NaN: no readings in that hour), or None.
    profile: Sequence[float] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls, device_id: int, facts: Mapping[str, Fact], post_rate: int = DEFAULT_POST_RATE
    ) -> DerFacts:
        """From facts by their 2030.5 names (tests, and what an explanation shows)."""
        return cls(device_id, post_rate=post_rate).with_facts(facts)

    def with_facts(self, new: Mapping[str, Fact]) -> DerFacts:
        """These facts updated (unknown names are a programming error); a part's time is
        the newest of its facts' times."""
        unknown = set(new) - FACTS
        if unknown:
            raise ValueError(f"unknown DER facts: {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for name, fact in new.items():
            attribute, at = FIELDS[name]
            changes[attribute] = fact.value
            changes[at] = max(fact.at, changes.get(at) or getattr(self, at) or fact.at)
        return replace(self, **changes)

    def with_document(self, document: DerDocument, at: int) -> DerFacts:
        """A PUT document replaces all the facts of its part (absent ones become None)."""
        changes: dict[str, Any] = {f.name: getattr(document, f.name) for f in fields(document)}
        changes[PART_OF[type(document)]] = at
        return replace(self, **changes)

    @property
    def facts(self) -> dict[str, Fact]:
        """The known facts by their 2030.5 names, each with its part's time."""
        found = {}
        for name, (attribute, at) in FIELDS.items():
            value, when = getattr(self, attribute), getattr(self, at)
            if value is not None and when is not None:
                found[name] = Fact(float(value), int(when))
        return found

    def value(self, name: str) -> float | None:
        value = getattr(self, FIELDS[name][0])
        return None if value is None else float(value)

    @property
    def usable_wh(self) -> float | None:
        return self.set_max_wh or self.rtg_max_wh

    def latest_soc(self) -> tuple[float, int] | None:
        """The newest state of charge (%) and its time, from DERStatus or a mirrored
        reading (the reading when both describe the same second)."""
        status, reading = self.state_of_charge, self.soc
        status_at, reading_at = self.status_at, self.soc_at_reading
        if reading is not None and reading_at is not None:
            if status is not None and status_at is not None and status_at > reading_at:
                return status, status_at
            return reading, reading_at
        if status is not None and status_at is not None:
            return status, status_at
        return None

    @property
    def soc_percent(self) -> float | None:
        """The newest state of charge, from DERStatus or from a mirrored reading."""
        latest = self.latest_soc()
        return None if latest is None else latest[0]

    @property
    def soc_at(self) -> int | None:
        latest = self.latest_soc()
        return None if latest is None else latest[1]

    @property
    def max_discharge_w(self) -> float | None:
        named = (
            self.set_max_discharge_rate_w,
            self.rtg_max_discharge_rate_w,
            self.set_max_w,
            self.rtg_max_w,
        )
        given = [v for v in named if v is not None and v >= 0]
        return min(given) if given else None

    @property
    def max_charge_w(self) -> float | None:
        named = (
            self.set_max_charge_rate_w,
            self.rtg_max_charge_rate_w,
            self.set_max_w,
            self.rtg_max_w,
        )
        given = [v for v in named if v is not None and v >= 0]
        return min(given) if given else None

    def is_stale(self, now: int) -> bool:
        at = self.soc_at
        return at is None or now - at > 2 * self.post_rate


def reserve_percent(
    facts: DerFacts, program_floor: float = 0.0, site_override: float | None = None
) -> float:
    """The largest of the program's floor, the site's override (the one given, else the one
    the utility set for this site) and the device's own DERAvailability reservePercent."""
    site = site_override if site_override is not None else facts.site_reserve_percent
    candidates = [program_floor, site, facts.reserve_percent]
    return max(c for c in candidates if c is not None)


def energy_above_reserve_wh(facts: DerFacts, reserve: float) -> float:
    soc, usable = facts.soc_percent, facts.usable_wh
    if soc is None or usable is None:
        return 0.0
    return max(0.0, (soc - reserve) / 100 * usable)


def deliverable_w(facts: DerFacts, reserve: float, duration: int, now: int) -> float:
    """What this DER can deliver for `duration` seconds without going below its reserve."""
    limit = facts.max_discharge_w
    if limit is None or duration <= 0 or facts.is_stale(now):
        return 0.0
    return max(0.0, min(limit, energy_above_reserve_wh(facts, reserve) * 3600 / duration))


@dataclass(frozen=True, slots=True)
class Allocation:
    """Whole watts per device, what was asked, what could be given, and the shortfall."""

    setpoints: Mapping[int, int]
    target_w: int
    available_w: int

    @property
    def allocated_w(self) -> int:
        return sum(self.setpoints.values())

    @property
    def shortfall_w(self) -> int:
        return max(0, self.target_w - self.available_w)


def allocate(target_w: int, deliverable: Mapping[int, float]) -> Allocation:
    """Share a group's target pro rata to what each device can deliver, never more than it
    can: the group gives min(target, what all can give), in whole watts (largest remainder)."""
    caps = {device: int(w) for device, w in deliverable.items() if w >= 1}
    available = sum(caps.values())
    give = max(0, min(target_w, available))
    if give == 0:
        return Allocation({d: 0 for d in deliverable}, target_w, available)
    shares = {d: give * cap / available for d, cap in caps.items()}
    setpoints = {d: int(share) for d, share in shares.items()}
    remainder = give - sum(setpoints.values())
    by_fraction = sorted(caps, key=lambda d: (setpoints[d] - shares[d], d))
    for device in by_fraction:
        if remainder == 0:
            break
        if setpoints[device] < caps[device]:
            setpoints[device] += 1
            remainder -= 1
    return Allocation({d: setpoints.get(d, 0) for d in deliverable}, target_w, available)


def charge_setpoint_w(
    facts: DerFacts, target_soc: float, reserve: float, duration: int, now: int
) -> int:
    """The power that brings a battery to `target_soc` by the end of `duration`, within its
    limits and never below its reserve (negative: charge, 2030.5 sign)."""
    soc, usable = facts.soc_percent, facts.usable_wh
    if soc is None or usable is None or duration <= 0 or facts.is_stale(now):
        return 0
    goal = max(target_soc, reserve) if target_soc < soc else target_soc
    watts = (soc - goal) / 100 * usable * 3600 / duration
    if watts > 0:
        return int(min(watts, facts.max_discharge_w or 0.0))
    return -int(min(-watts, facts.max_charge_w or 0.0))


# ---- capacity now and forecast -----------------------------------------------------------
NO_SOC = "no state of charge posted"
STALE = "state of charge older than twice the postRate"
NO_ENERGY = "no usable energy (DERSettings setMaxWh or DERCapability rtgMaxWh)"
NO_LIMIT = "no discharge limit (rtgMaxDischargeRateW, setMaxDischargeRateW, rtgMaxW, setMaxW)"


def unavailable_reason(facts: DerFacts, now: int) -> str | None:
    """Why this device counts as zero (and is flagged), or None when it can be counted."""
    if facts.soc_at is None:
        return NO_SOC
    if facts.is_stale(now):
        return STALE
    if not facts.usable_wh:
        return NO_ENERGY
    if facts.max_discharge_w is None:
        return NO_LIMIT
    return None


@dataclass(frozen=True, slots=True)
class DeviceCapacity:
    """One device's part of the fleet's capacity now, with the inputs that led to it."""

    device_id: int
    reserve_percent: float
    energy_wh: float
    power_w: float
    unavailable: str | None = None


def device_capacity(
    facts: DerFacts, now: int, duration: int = 3600, program_floor: float = 0.0
) -> DeviceCapacity:
    reserve = reserve_percent(facts, program_floor)
    reason = unavailable_reason(facts, now)
    if reason is not None:
        return DeviceCapacity(facts.device_id, reserve, 0.0, 0.0, reason)
    energy = energy_above_reserve_wh(facts, reserve)
    return DeviceCapacity(
        facts.device_id, reserve, energy, deliverable_w(facts, reserve, duration, now)
    )


@dataclass(frozen=True, slots=True)
class CapacityPoint:
    """The fleet at one moment: energy above reserve (Wh), the power it can hold for the
    duration asked (W), and how many devices were counted."""

    at: int
    energy_wh: float
    power_w: float
    devices: int


@dataclass(frozen=True, slots=True)
class FleetCapacity:
    """Capacity now and at the start of each of the next hours, and the devices that could
    not be counted, each with the reason (flagged)."""

    now: CapacityPoint
    forecast: tuple[CapacityPoint, ...]
    devices: int
    duration: int
    program_floor: float
    unavailable: Mapping[int, str]


def soc_path(facts: DerFacts, starts: Sequence[int]) -> list[float]:
    """The device's state of charge (%) at each of `starts` (ascending, after its last state
    of charge), moved by its hour-of-day behaviour within its limits and 0-100 %.

    Written for speed (it runs 24 times per device of a 100,000-device fleet): no calls in
    the loop, the clipping spelled out."""
    latest = facts.latest_soc()
    if latest is None:
        return [math.nan for _ in starts]
    soc, t = latest
    profile, usable = facts.profile, facts.usable_wh
    if profile is None or not usable:
        return [soc for _ in starts]
    discharge, charge = facts.max_discharge_w, facts.max_charge_w
    high = math.inf if discharge is None else discharge
    low = -math.inf if charge is None else -charge
    per_w_second = 1 / (36 * usable)  # percent of usable energy per W·s
    out = []
    for start in starts:
        while t < start:
            hour = t // 3600
            end = (hour + 1) * 3600
            if end > start:
                end = start
            w = profile[hour % HOURS_PER_DAY]
            if w == w:  # not NaN: the device has history for this hour of day
                if w > high:
                    w = high
                elif w < low:
                    w = low
                soc -= w * (end - t) * per_w_second
                if soc < 0.0:
                    soc = 0.0
                elif soc > 100.0:
                    soc = 100.0
            t = end
        out.append(soc)
    return out


def forecast_starts(now: int, hours: int = HOURS_PER_DAY) -> list[int]:
    """The starts of the next `hours` whole hours after `now`."""
    first = (now // 3600 + 1) * 3600
    return [first + 3600 * k for k in range(hours)]


Schedule = tuple[tuple[int, int, float], ...]


class CapacityInputs(NamedTuple):
    """What capacity and the forecast need of one device, derived once from its facts.

    A plain tuple rather than a DerFacts: the fleet service keeps one per device in memory
    between queries (100,000 of them), and the capacity loop unpacks it in one step."""

    device_id: int
    #: The newest state of charge (%) and its time (DERStatus or a mirrored reading).
    soc: float | None
    soc_at: int | None
    #: soc_at + 2 x postRate: the device counts until then, is stale after (None: no SoC).
    stale_after: int | None
    usable_wh: float | None
    max_discharge_w: float | None
    max_charge_w: float | None
    #: The larger of the utility's per-site reserve and the device's own reservePercent.
    own_reserve: float | None
    #: Why the device cannot be counted whatever the time (NO_SOC, NO_ENERGY, NO_LIMIT).
    problem: str | None
    profile: Sequence[float] | None
    #: The device's own setpoints ahead (start, end, W; positive discharges), newest last:
    #: in those seconds it follows them instead of its habit (None: none scheduled).
    schedule: Schedule | None = None


#: The DerFacts attributes capacity_inputs_of takes, in its order (the store selects them so).
CAPACITY_FIELDS = (
    "rtg_max_w",
    "rtg_max_wh",
    "rtg_max_charge_rate_w",
    "rtg_max_discharge_rate_w",
    "set_max_w",
    "set_max_wh",
    "set_max_charge_rate_w",
    "set_max_discharge_rate_w",
    "state_of_charge",
    "status_at",
    "soc",
    "soc_at_reading",
    "reserve_percent",
    "site_reserve_percent",
)


def capacity_inputs_of(
    device_id: int,
    values: Sequence[Any],
    post_rate: int,
    profile: Sequence[float] | None,
) -> CapacityInputs:
    """CapacityInputs from the CAPACITY_FIELDS values, by the rules DerFacts spells out
    (latest_soc, usable_wh, max_discharge_w, max_charge_w, reserve_percent,
    unavailable_reason; a property test keeps them equal). Written out once here so the
    store can build 100,000 of these from rows without making a DerFacts for each."""
    (
        rtg_w,
        rtg_wh,
        rtg_charge,
        rtg_discharge,
        set_w,
        set_wh,
        set_charge,
        set_discharge,
        status,
        status_at,
        reading,
        reading_at,
        device_reserve,
        site_reserve,
    ) = values
    soc: float | None = None
    soc_at: int | None = None
    if reading is not None and reading_at is not None:
        if status is not None and status_at is not None and status_at > reading_at:
            soc, soc_at = status, status_at
        else:
            soc, soc_at = reading, reading_at
    elif status is not None and status_at is not None:
        soc, soc_at = status, status_at
    usable = set_wh or rtg_wh
    given = [v for v in (set_discharge, rtg_discharge, set_w, rtg_w) if v is not None and v >= 0]
    discharge = min(given) if given else None
    given = [v for v in (set_charge, rtg_charge, set_w, rtg_w) if v is not None and v >= 0]
    charge = min(given) if given else None
    if site_reserve is None:
        own = device_reserve
    elif device_reserve is None:
        own = site_reserve
    else:
        own = max(site_reserve, device_reserve)
    if soc_at is None:
        problem: str | None = NO_SOC
    elif not usable:
        problem = NO_ENERGY
    elif discharge is None:
        problem = NO_LIMIT
    else:
        problem = None
    return CapacityInputs(
        device_id,
        soc,
        soc_at,
        None if soc_at is None else soc_at + 2 * post_rate,
        usable,
        discharge,
        charge,
        own,
        problem,
        profile,
    )


def capacity_inputs(facts: DerFacts) -> CapacityInputs:
    return capacity_inputs_of(
        facts.device_id,
        [getattr(facts, name) for name in CAPACITY_FIELDS],
        facts.post_rate,
        facts.profile,
    )


@lru_cache(maxsize=16)
def _hours_of_day(first: int, count: int) -> tuple[int, ...]:
    """The hour of day each of `count` whole hours after `first` moves through (the one
    before its start): the same for every device of a query."""
    return tuple((first // 3600 + k) % HOURS_PER_DAY for k in range(count))


def forecast_socs(device: CapacityInputs, starts: Sequence[int]) -> list[float]:
    """The state of charge (%) the forecast gives a device at each of `starts` (the whole
    hours after now): moved to the first as soc_path moves it, then by whole hours of its
    hour-of-day behaviour, within its limits and 0-100 %. It depends on the hour, not the
    second, so the fleet service reuses it for every query within the hour."""
    soc, t, usable, profile = device.soc, device.soc_at, device.usable_wh, device.profile
    if soc is None or t is None:
        return [math.nan for _ in starts]
    if device.schedule is not None and usable and starts:
        return scheduled_socs(device, device.schedule, starts)
    if profile is None or not usable or not starts:
        return [soc for _ in starts]
    discharge, charge = device.max_discharge_w, device.max_charge_w
    high = math.inf if discharge is None else discharge
    low = -math.inf if charge is None else -charge
    per_w_second = 1 / (36 * usable)  # percent of usable energy per W·s
    first = starts[0]
    while t < first:  # as soc_path, to the first whole hour
        hour = t // 3600
        end = (hour + 1) * 3600
        if end > first:
            end = first
        w = profile[hour % HOURS_PER_DAY]
        if w == w:  # not NaN: the device has history for this hour of day
            if w > high:
                w = high
            elif w < low:
                w = low
            soc -= w * (end - t) * per_w_second
            if soc < 0.0:
                soc = 0.0
            elif soc > 100.0:
                soc = 100.0
        t = end
    out = [soc]
    limit = discharge or 0.0
    per_w_hour = 1 / (usable / 100)  # percent of usable energy per W·h
    for hour in _hours_of_day(first, len(starts) - 1):  # then whole hours
        w = profile[hour]
        if w == w:
            if w > limit:
                w = limit
            elif w < low:
                w = low
            soc -= w * per_w_hour
            if soc < 0.0:
                soc = 0.0
            elif soc > 100.0:
                soc = 100.0
        out.append(soc)
    return out


def scheduled_socs(
    device: CapacityInputs, schedule: Schedule, starts: Sequence[int]
) -> list[float]:
    """forecast_socs for a device with setpoints ahead: second by second segments (split at
    each hour and each setpoint's start and end), the setpoint in force (the newest covering
    the moment) moving its state of charge where one is, its hour-of-day behaviour elsewhere;
    within its limits and 0-100 %. Slower than the whole-hour loop, and only for the devices
    an event scheduled."""
    soc, t, usable, profile = device.soc, device.soc_at, device.usable_wh, device.profile
    assert soc is not None and t is not None and usable
    discharge, charge = device.max_discharge_w, device.max_charge_w
    high = math.inf if discharge is None else discharge
    low = -math.inf if charge is None else -charge
    per_w_second = 1 / (36 * usable)
    edges = sorted({e for start, end, _ in schedule for e in (start, end)})
    out = []
    for start in starts:
        while t < start:
            end = min((t // 3600 + 1) * 3600, start)
            for edge in edges:
                if t < edge < end:
                    end = edge
                    break
            w: float = math.nan
            for s_start, s_end, watts in schedule:  # newest last: the last covering wins
                if s_start <= t < s_end:
                    w = watts
            if w != w and profile is not None:
                w = profile[(t // 3600) % HOURS_PER_DAY]
            if w == w:
                w = min(max(w, low), high)
                soc = min(100.0, max(0.0, soc - w * (end - t) * per_w_second))
            t = end
        out.append(soc)
    return out


def fleet_capacity(
    fleet: Iterable[DerFacts],
    now: int,
    *,
    duration: int = 3600,
    program_floor: float = 0.0,
    hours: int = HOURS_PER_DAY,
) -> FleetCapacity:
    """Capacity above reserve now and an hourly forecast, summed over the fleet; devices that
    cannot be counted add zero everywhere and are listed with why."""
    return capacity_of(
        [capacity_inputs(f) for f in fleet],
        now,
        duration=duration,
        program_floor=program_floor,
        hours=hours,
    )


def capacity_of(
    devices: Iterable[CapacityInputs],
    now: int,
    *,
    duration: int = 3600,
    program_floor: float = 0.0,
    hours: int = HOURS_PER_DAY,
    socs: Callable[[CapacityInputs, Sequence[int]], Sequence[float]] = forecast_socs,
) -> FleetCapacity:
    """fleet_capacity over CapacityInputs. `socs` gives a device's forecast states of charge
    (forecast_socs, or a cache of its answers: they change only with the hour).

    Written for speed (the inner loop runs 24 times per device of a 100,000-device fleet):
    no calls in it, each device's inputs unpacked once."""
    starts = forecast_starts(now, hours)
    per_second = 3600 / duration  # W held for the duration, per Wh
    energy_now = power_now = 0.0
    energy = [0.0] * hours
    power = [0.0] * hours
    counted = total = 0
    unavailable: dict[int, str] = {}
    for device in devices:
        total += 1
        (device_id, soc, _, stale_after, usable, limit, _, own, problem, profile, plan) = device
        if stale_after is None:
            unavailable[device_id] = NO_SOC
            continue
        if now > stale_after:
            unavailable[device_id] = STALE
            continue
        if problem is not None:
            unavailable[device_id] = problem
            continue
        assert soc is not None and usable is not None  # problem None says so
        counted += 1
        # the largest of the floor and the device's own (reserve_percent)
        reserve = own if own is not None and own > program_floor else program_floor
        e_now = (soc - reserve) / 100 * usable  # energy_above_reserve_wh
        if e_now < 0.0:
            e_now = 0.0
        limit = limit or 0.0
        p_now = e_now * per_second
        if p_now > limit:
            p_now = limit
        energy_now += e_now
        power_now += p_now
        if profile is None and plan is None:  # no history: its state of charge stays
            if e_now > 0:
                for k in range(hours):
                    energy[k] += e_now
                    power[k] += p_now
            continue
        per_percent = usable / 100
        k = 0
        for soc_k in socs(device, starts):
            e = (soc_k - reserve) * per_percent
            if e > 0:
                energy[k] += e
                p = e * per_second
                power[k] += p if p < limit else limit
            k += 1  # noqa: SIM113 - enumerate costs a tuple per step of the hot loop
    return FleetCapacity(
        now=CapacityPoint(now, energy_now, power_now, counted),
        forecast=tuple(
            CapacityPoint(start, energy[k], power[k], counted) for k, start in enumerate(starts)
        ),
        devices=total,
        duration=duration,
        program_floor=program_floor,
        unavailable=unavailable,
    )


@dataclass(frozen=True, slots=True)
class StorageFigures:
    """A group's storage as OpenADR's storage report payloads describe it: usable energy
    (Wh), energy above reserve (Wh), and the power it can sustain for the duration asked,
    discharging without crossing its reserves and charging without passing 100 % (W)."""

    usable_wh: float
    above_reserve_wh: float
    max_discharge_w: float
    max_charge_w: float
    devices: int


def storage_figures(
    devices: Iterable[CapacityInputs], now: int, *, duration: int, program_floor: float = 0.0
) -> StorageFigures:
    """Summed over the devices that can be counted now (as capacity_of counts them)."""
    usable_sum = energy_sum = discharge_sum = charge_sum = 0.0
    counted = 0
    per_second = 3600 / duration
    for device in devices:
        (_, soc, _, stale_after, usable, discharge, charge, own, problem, _, _) = device
        if stale_after is None or now > stale_after or problem is not None:
            continue
        assert soc is not None and usable is not None
        counted += 1
        reserve = own if own is not None and own > program_floor else program_floor
        energy = max(0.0, (soc - reserve) / 100 * usable)
        headroom = max(0.0, (100.0 - soc) / 100 * usable)
        usable_sum += usable
        energy_sum += energy
        discharge_sum += min(discharge or 0.0, energy * per_second)
        charge_sum += min(charge or 0.0, headroom * per_second)
    return StorageFigures(usable_sum, energy_sum, discharge_sum, charge_sum, counted)


# ---- the hour-of-day behaviour -------------------------------------------------------------
def hour_of_day_profile(
    samples: Iterable[HourSample], until_hour: int, days: int = PROFILE_DAYS
) -> tuple[float, ...] | None:
    """Mean W per UTC hour of day over the `days` days of whole hours before `until_hour`
    (an epoch hour: the hour in progress is left out); NaN where an hour of day has no
    reading, None when no hour has."""
    sums = [0.0] * HOURS_PER_DAY
    counts = [0] * HOURS_PER_DAY
    first = until_hour - days * HOURS_PER_DAY
    for sample in samples:
        if first <= sample.hour < until_hour and sample.w_count:
            sums[sample.hour % HOURS_PER_DAY] += sample.w_sum
            counts[sample.hour % HOURS_PER_DAY] += sample.w_count
    if not any(counts):
        return None
    return tuple(s / n if n else math.nan for s, n in zip(sums, counts, strict=True))


# ---- the forecast's error on yesterday -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ErrorHour:
    """Energy above reserve at the end of one hour of yesterday: what the forecast made at
    00:00 said, and what the devices' state of charge showed."""

    at: int
    forecast_wh: float
    actual_wh: float


@dataclass(frozen=True, slots=True)
class ForecastError:
    day_start: int
    hours: tuple[ErrorHour, ...]
    #: Devices compared: those with a state of charge in the hour before 00:00 and after.
    devices: int

    @property
    def mean_absolute_error_wh(self) -> float | None:
        if not self.hours:
            return None
        return sum(abs(h.forecast_wh - h.actual_wh) for h in self.hours) / len(self.hours)

    @property
    def mean_absolute_percent_error(self) -> float | None:
        """The mean absolute error as a percentage of the mean actual energy."""
        mae = self.mean_absolute_error_wh
        actual = sum(h.actual_wh for h in self.hours)
        if mae is None or actual <= 0:
            return None
        return 100 * mae / (actual / len(self.hours))


def yesterday_error(
    fleet: Iterable[DerFacts],
    samples: Mapping[int, Sequence[HourSample]],
    now: int,
    program_floor: float = 0.0,
) -> ForecastError:
    """The forecast the same rules would have made at yesterday 00:00 UTC (each device's last
    state of charge in the hour before it, its behaviour over the 7 days before it) against
    the last state of charge each device posted in each hour of yesterday. Hours a device
    posted no state of charge in are left out of both sides for that device."""
    day_start = (now // 86400 - 1) * 86400
    first_hour = day_start // 3600
    ends = [day_start + 3600 * k for k in range(1, HOURS_PER_DAY + 1)]
    forecast = [0.0] * HOURS_PER_DAY
    actual = [0.0] * HOURS_PER_DAY
    seen = [False] * HOURS_PER_DAY
    compared = 0
    for facts in fleet:
        mine = samples.get(facts.device_id, ())
        by_hour = {s.hour: s for s in mine if s.soc is not None and s.soc_at is not None}
        before = by_hour.get(first_hour - 1)
        usable = facts.usable_wh
        if before is None or before.soc is None or before.soc_at is None or not usable:
            continue
        then = replace(
            facts,
            state_of_charge=None,
            status_at=None,
            soc=before.soc,
            soc_at_reading=before.soc_at,
            profile=hour_of_day_profile(mine, first_hour),
        )
        reserve = reserve_percent(facts, program_floor)
        path = soc_path(then, ends)
        counted = False
        for k, soc in enumerate(path):
            shown = by_hour.get(first_hour + k)
            if shown is None or shown.soc is None:
                continue
            counted = True
            seen[k] = True
            forecast[k] += max(0.0, (soc - reserve) * usable / 100)
            actual[k] += max(0.0, (shown.soc - reserve) * usable / 100)
        compared += counted
    hours = tuple(
        ErrorHour(ends[k], forecast[k], actual[k]) for k in range(HOURS_PER_DAY) if seen[k]
    )
    return ForecastError(day_start, hours, compared)
