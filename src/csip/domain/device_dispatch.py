"""Per-device dispatch of a customer battery program: a group's target shared among its
batteries without touching anyone's reserve, and the rules that keep it true during the event
(issue 12 items 3 and 4).

* **Inputs** of a device (`inputs`): its state of charge and how old it is, its reserve (the
  largest of the program's floor, the site override and its own DERAvailability
  reservePercent, `domain.fleet.reserve_percent`), usable energy and charge/discharge limits.
  A state of charge older than twice the device's postRate makes it **unavailable**: it gets
  nothing and is flagged, never guessed at.
* **Discharge** (``DISPATCH_SETPOINT``, W for the group): interval by interval, in order,
  each available device can deliver min(discharge limit, energy above reserve / interval
  length), with the energy it was asked for in earlier intervals already spent; the group's
  target is shared pro rata to that (`domain.fleet.allocate`, whole watts, never more than a
  device can give). What the target asks beyond what all can give is the **shortfall**,
  kept with the plan.
* **Charge state** (``CHARGE_STATE_SETPOINT``, a percentage): each device gets the power that
  brings it to the asked state of charge by the interval's end, within its limits, never
  below its reserve (negative: charge, 2030.5's sign).
* **Fixed** devices (re-planned less than `REPLAN_EVERY` ago) keep their setpoints; the
  others share what remains of the target. A re-plan never asks a device for more than it can
  give, fixed or not: the reserve comes first.
* **Falling short** (`assess`): a device is short when its state of charge, at the rate it is
  going (the larger of its setpoint and what it measured), would cross its reserve before
  the interval ends, or when its two latest power readings since its setpoint began are
  each under 80 % of the setpoint. It is then re-planned with what it really delivers.

Pure: times are epoch seconds, passed in; powers in W (positive delivered), percentages 0-100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from csip.domain.fleet import (
    DerFacts,
    allocate,
    energy_above_reserve_wh,
    reserve_percent,
    unavailable_reason,
)

DISCHARGE = "discharge"
CHARGE = "charge"
#: No device gets a new setpoint more often than this (seconds), an event update aside.
REPLAN_EVERY = 15 * 60
#: Below this share of its setpoint, for SHORT_POSTS readings in a row, a device falls short.
SHORT_SHARE = 0.8
SHORT_POSTS = 2
#: Percentage points of state of charge a projection may dip under the reserve before the
#: device counts as heading below it (readings have 0.01 % resolution; rounding is not a fall).
SOC_TOLERANCE = 0.5

#: Why a device is not (or no longer) shared in.
OPTED_OUT = "opted out"
SHORT_SOC = "state of charge heading below its reserve"
SHORT_POWER = "delivered under 80 % of its setpoint for two posts"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a device's setpoints were computed from (the admin API shows it as is)."""

    device_id: int
    soc: float | None
    soc_at: int | None
    age: int | None
    reserve: float
    usable_wh: float | None
    max_discharge_w: float | None
    max_charge_w: float | None
    post_rate: int
    unavailable: str | None

    def json(self) -> dict[str, object]:
        return {
            "soc_percent": self.soc,
            "soc_at": self.soc_at,
            "data_age_s": self.age,
            "reserve_percent": self.reserve,
            "usable_wh": self.usable_wh,
            "max_discharge_w": self.max_discharge_w,
            "max_charge_w": self.max_charge_w,
            "post_rate": self.post_rate,
            "unavailable": self.unavailable,
        }


def inputs(facts: DerFacts, program_floor: float, now: int) -> Inputs:
    soc_at = facts.soc_at
    return Inputs(
        facts.device_id,
        facts.soc_percent,
        soc_at,
        None if soc_at is None else now - soc_at,
        reserve_percent(facts, program_floor),
        facts.usable_wh,
        facts.max_discharge_w,
        facts.max_charge_w,
        facts.post_rate,
        unavailable_reason(facts, now),
    )


@dataclass(frozen=True, slots=True)
class Ask:
    """What one interval asks of the group: a power (W) or a state of charge (percent)."""

    interval_id: int
    start: int
    duration: int
    kind: str
    value: float

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class IntervalPlan:
    """One interval as planned: from when (`start`: the interval's, or now when it is under
    way), the target, what the group could give, the shortfall, and each device's watts."""

    interval_id: int
    start: int
    end: int
    kind: str
    target: float
    available_w: int
    setpoints: Mapping[int, int]
    deliverable: Mapping[int, int] = field(default_factory=dict)

    @property
    def allocated_w(self) -> int:
        return sum(self.setpoints.values())

    @property
    def shortfall_w(self) -> int:
        if self.kind != DISCHARGE:
            return 0
        return max(0, int(self.target) - self.allocated_w)

    def json(self) -> dict[str, object]:
        return {
            "interval": self.interval_id,
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            ("target_w" if self.kind == DISCHARGE else "target_soc_percent"): self.target,
            "available_w": self.available_w,
            "allocated_w": self.allocated_w,
            "shortfall_w": self.shortfall_w,
        }


def plan_group(
    asks: Sequence[Ask],
    devices: Sequence[Inputs],
    now: int,
    *,
    fixed: Mapping[int, Mapping[int, int]] | None = None,
    caps: Mapping[int, float] | None = None,
    excluded: Mapping[int, str] | None = None,
) -> tuple[IntervalPlan, ...]:
    """Each interval not over, in order, shared among the available devices.

    `fixed`: device -> {interval id: W} it keeps (re-planned too recently); `caps`: device ->
    the most W it is trusted to deliver (what it measured when it fell short); `excluded`:
    devices out of this event (opted out), with why. Unavailable and excluded devices get 0."""
    fixed = fixed or {}
    caps = caps or {}
    excluded = excluded or {}
    usable = [d for d in devices if d.unavailable is None and d.device_id not in excluded]
    energy = {
        d.device_id: max(0.0, ((d.soc or 0.0) - d.reserve) / 100 * (d.usable_wh or 0.0))
        for d in usable
    }
    soc = {d.device_id: d.soc or 0.0 for d in usable}
    plans = []
    for ask in sorted(asks, key=lambda a: (a.start, a.interval_id)):
        if ask.end <= now:
            continue
        start = max(ask.start, now)
        seconds = ask.end - start
        if ask.kind == DISCHARGE:
            interval = _discharge(ask, start, seconds, usable, energy, fixed, caps)
        else:
            interval = _charge(ask, start, seconds, usable, soc, fixed)
        for device in usable:
            watts = interval.setpoints.get(device.device_id, 0)
            wh = watts * seconds / 3600
            energy[device.device_id] = max(0.0, energy[device.device_id] - wh)
            if device.usable_wh:
                soc[device.device_id] -= wh / device.usable_wh * 100
        everyone = {d.device_id: 0 for d in devices}
        plans.append(
            IntervalPlan(
                interval.interval_id,
                interval.start,
                interval.end,
                interval.kind,
                interval.target,
                interval.available_w,
                everyone | dict(interval.setpoints),
                interval.deliverable,
            )
        )
    return tuple(plans)


def _deliverable(device: Inputs, energy_wh: float, seconds: int, cap: float | None) -> int:
    limit = device.max_discharge_w
    if limit is None or seconds <= 0:
        return 0
    watts = min(limit, energy_wh * 3600 / seconds)
    if cap is not None:
        watts = min(watts, cap)
    return max(0, int(watts))


def _discharge(
    ask: Ask,
    start: int,
    seconds: int,
    usable: Sequence[Inputs],
    energy: Mapping[int, float],
    fixed: Mapping[int, Mapping[int, int]],
    caps: Mapping[int, float],
) -> IntervalPlan:
    can = {
        d.device_id: _deliverable(d, energy[d.device_id], seconds, caps.get(d.device_id))
        for d in usable
    }
    kept = {
        d: min(w[ask.interval_id], can.get(d, 0))
        for d, w in fixed.items()
        if ask.interval_id in w and d in can
    }
    shared = {d: float(w) for d, w in can.items() if d not in kept}
    target = max(0, int(ask.value) - sum(kept.values()))
    allocation = allocate(target, shared)
    setpoints = {**dict(allocation.setpoints), **kept}
    return IntervalPlan(
        ask.interval_id, start, ask.end, DISCHARGE, ask.value, sum(can.values()), setpoints, can
    )


def _charge(
    ask: Ask,
    start: int,
    seconds: int,
    usable: Sequence[Inputs],
    soc: Mapping[int, float],
    fixed: Mapping[int, Mapping[int, int]],
) -> IntervalPlan:
    setpoints: dict[int, int] = {}
    for device in usable:
        kept = fixed.get(device.device_id, {}).get(ask.interval_id)
        setpoints[device.device_id] = (
            kept
            if kept is not None
            else charge_to(device, soc[device.device_id], ask.value, seconds)
        )
    available = sum(int(d.max_discharge_w or 0) for d in usable)
    return IntervalPlan(ask.interval_id, start, ask.end, CHARGE, ask.value, available, setpoints)


def charge_to(device: Inputs, soc: float, target_soc: float, seconds: int) -> int:
    """W that brings the device from `soc` to `target_soc` in `seconds`, within its limits,
    never below its reserve (negative: charge)."""
    usable = device.usable_wh
    if not usable or seconds <= 0:
        return 0
    goal = max(target_soc, device.reserve) if target_soc < soc else min(target_soc, 100.0)
    watts = (soc - goal) / 100 * usable * 3600 / seconds
    if watts > 0:
        return int(min(watts, device.max_discharge_w or 0.0))
    return -int(min(-watts, device.max_charge_w or 0.0))


# ---- staying true during the event ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Assessment:
    """A device's state now against its setpoint: short (and why), and the most it is now
    trusted to deliver (None: its limits as usual)."""

    reason: str | None
    cap_w: float | None = None


def assess(
    facts: DerFacts,
    reserve: float,
    setpoint_w: int,
    interval_end: int,
    readings: Sequence[tuple[int, float]],
    now: int,
) -> Assessment:
    """Is the device falling short of `setpoint_w` (W it should deliver until `interval_end`)?
    `readings`: its (start, W) power readings since that setpoint began, oldest first."""
    if setpoint_w <= 0 or now >= interval_end:
        return Assessment(None)
    latest = [w for _, w in readings[-SHORT_POSTS:]]
    if len(latest) == SHORT_POSTS and all(w < SHORT_SHARE * setpoint_w for w in latest):
        return Assessment(SHORT_POWER, max(0.0, latest[-1]))
    soc, usable = facts.soc_percent, facts.usable_wh
    if soc is not None and usable:
        rate = max([float(setpoint_w), *latest])
        projected = soc - rate * (interval_end - now) / 3600 / usable * 100
        if projected < reserve - SOC_TOLERANCE:
            return Assessment(
                SHORT_SOC,
                energy_above_reserve_wh(facts, reserve) * 3600 / max(1, interval_end - now),
            )
    return Assessment(None)


def due_for_replan(last_planned: int, now: int) -> bool:
    return now - last_planned >= REPLAN_EVERY
