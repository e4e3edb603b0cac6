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
* A fact older than twice the device's post rate is **stale**: such a device counts as
  unavailable (and is flagged) rather than as a guess.

Pure: times are epoch seconds, passed in. Powers in W (2030.5 sign: positive is delivered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

#: Fact names, as the 2030.5 element each comes from (DER documents) or the reading kind.
RATINGS = ("rtgMaxW", "rtgMaxWh", "rtgMaxChargeRateW", "rtgMaxDischargeRateW")
SETTINGS = ("setMaxW", "setMaxWh", "setMaxChargeRateW", "setMaxDischargeRateW")
STATUS = ("stateOfChargeStatus", "storageModeStatus", "operationalModeStatus")
AVAILABILITY = ("reservePercent", "reserveChargePercent", "statWAvail", "availabilityDuration")
READINGS = ("W", "soc")
FACTS = frozenset((*RATINGS, *SETTINGS, *STATUS, *AVAILABILITY, *READINGS))


@dataclass(frozen=True, slots=True)
class Fact:
    value: float
    at: int


@dataclass(frozen=True, slots=True)
class DerFacts:
    """Everything csip knows of one DER, each fact with the time it was posted."""

    device_id: int
    facts: Mapping[str, Fact] = field(default_factory=dict)
    #: The device's MirrorUsagePoint postRate (s): how fresh its facts should be.
    post_rate: int = 300

    def with_facts(self, new: Mapping[str, Fact]) -> DerFacts:
        """These facts updated by a post (unknown names are a programming error)."""
        unknown = set(new) - FACTS
        if unknown:
            raise ValueError(f"unknown DER facts: {', '.join(sorted(unknown))}")
        return replace(self, facts={**self.facts, **new})

    def value(self, name: str) -> float | None:
        fact = self.facts.get(name)
        return None if fact is None else fact.value

    @property
    def usable_wh(self) -> float | None:
        return self.value("setMaxWh") or self.value("rtgMaxWh")

    @property
    def soc_percent(self) -> float | None:
        """The newest state of charge, from DERStatus or from a mirrored reading."""
        found = [f for f in (self.facts.get("stateOfChargeStatus"), self.facts.get("soc")) if f]
        return max(found, key=lambda f: f.at).value if found else None

    @property
    def soc_at(self) -> int | None:
        found = [f.at for f in (self.facts.get("stateOfChargeStatus"), self.facts.get("soc")) if f]
        return max(found) if found else None

    @property
    def max_discharge_w(self) -> float | None:
        named = [
            self.value(n)
            for n in ("setMaxDischargeRateW", "rtgMaxDischargeRateW", "setMaxW", "rtgMaxW")
        ]
        given = [v for v in named if v is not None and v >= 0]
        return min(given) if given else None

    @property
    def max_charge_w(self) -> float | None:
        named = [
            self.value(n) for n in ("setMaxChargeRateW", "rtgMaxChargeRateW", "setMaxW", "rtgMaxW")
        ]
        given = [v for v in named if v is not None and v >= 0]
        return min(given) if given else None

    def is_stale(self, now: int) -> bool:
        at = self.soc_at
        return at is None or now - at > 2 * self.post_rate


def reserve_percent(
    facts: DerFacts, program_floor: float = 0.0, site_override: float | None = None
) -> float:
    """The largest of the program's floor, the site's override and the device's own."""
    candidates = [program_floor, site_override, facts.value("reservePercent")]
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
