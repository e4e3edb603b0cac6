"""From one program event to a schedule of 2030.5 controls for every enrolled group it reaches.

`plan(event, program, enrollments, profile, now)` is pure: the services store what it returns
inside the event's own unit of work, and the wire packages render it. The rules:

* One control per interval, starting at the interval's start and lasting its duration, so the
  controls of one event follow each other with no gap wherever its intervals do (the program
  engine's schedules are contiguous; 2030.5 itself allows gaps, where DefaultDERControl
  applies). Equal consecutive controls merge into one.
* Payloads map to DERControlBase modes (the README's "One program, two standards" table):
  ``EXPORT_CAPACITY_LIMIT`` / ``IMPORT_CAPACITY_LIMIT`` to the CSIP-AUS ``opModExpLimW`` /
  ``opModImpLimW`` (csip-aus profile only; the csip profile has no such mode), a
  ``DISPATCH_SETPOINT`` in kW to ``opModTargetW`` (positive: power the DER delivers, 2030.5's
  sign), a ``CONTROL_SETPOINT`` in PERCENT to ``opModMaxLimW``, ``SIMPLE`` levels through the
  program's own table, ``ALERT_*`` to a TextMessage. Every other type reaches VENs only; what
  was not mapped is returned with the reason, never dropped silently.
* Power values are exact: ``value * 10^multiplier`` equals the asked watts, with the value an
  Int16 and the smallest multiplier that allows it (IEEE 2030.5 ActivePower). A value that
  cannot be written so, or a payload without the units it needs, is an error naming the
  payload: nothing of the event is stored.
* randomizeStart comes from the interval's period (2030.5 allows at most one hour);
  responseRequired asks for "received" and "specific response" (bits 0 and 1), so devices
  answer and the answers come back as reports.
* Intervals already over at `now` are not planned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from csip.domain.programs import Enrollment, Event, Interval, Payload, Program
from csip.errors import InvalidValues

#: DERControl.responseRequired: bit 0 "received", bit 1 "specific response" (sep.xsd).
RESPONSE_REQUIRED = "03"
INT16 = (-(2**15), 2**15 - 1)
MULTIPLIERS = range(-9, 10)  # PowerOfTenMultiplierType as 2030.5 documents it
ONE_HOUR = 3600
DESCRIPTION_MAX = 32  # String32

#: Payload types that become DERControlBase power modes, by profile.
POWER_MODES: Mapping[str, Mapping[str, str]] = {
    "csip": {"DISPATCH_SETPOINT": "opModTargetW"},
    "csip-aus": {
        "DISPATCH_SETPOINT": "opModTargetW",
        "EXPORT_CAPACITY_LIMIT": "opModExpLimW",
        "IMPORT_CAPACITY_LIMIT": "opModImpLimW",
    },
}
#: Watts per unit of the OpenADR units a power payload may carry.
WATTS_PER_UNIT: Mapping[str, Decimal] = {"KW": Decimal(1000)}
#: TextMessage priority (sep.xsd PriorityType: 0 low, 1 normal, 2 high, 3 critical).
ALERT_PRIORITY: Mapping[str, int] = {
    "ALERT_GRID_EMERGENCY": 3,
    "ALERT_BLACK_START": 3,
    "ALERT_FIRE": 3,
    "ALERT_TSUNAMI": 3,
    "ALERT_POSSIBLE_OUTAGE": 2,
    "ALERT_FLEX_ALERT": 2,
}
NOT_MAPPED: Mapping[str, str] = {
    "DISPATCH_SETPOINT_RELATIVE": "2030.5 has no relative setpoint mode",
    "CHARGE_STATE_SETPOINT": "needs per-device dispatch (each battery's own limits)",
}


@dataclass(frozen=True, slots=True)
class ControlDraft:
    """A DERControl before it is stored: what the engine asks one group's devices to do."""

    start: int
    duration: int
    base: Mapping[str, Any]
    description: str
    interval_ids: tuple[int, ...]
    randomize_start: int | None = None
    response_required: str | None = RESPONSE_REQUIRED

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A TextMessage of the Messaging function set (alerts and program notices)."""

    start: int
    duration: int
    text: str
    priority: int
    originator: str


@dataclass(frozen=True, slots=True)
class Unmapped:
    payload_type: str
    reason: str


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What one enrolled group gets of one event."""

    enrollment: Enrollment
    controls: tuple[ControlDraft, ...]
    messages: tuple[MessageDraft, ...]
    unmapped: tuple[Unmapped, ...]


def active_power(watts: Decimal, what: str) -> dict[str, int]:
    """{"multiplier": m, "value": v} with v * 10^m == watts exactly, v an Int16, m smallest."""
    for multiplier in sorted(MULTIPLIERS, key=abs):
        try:
            scaled = watts.scaleb(-multiplier)
        except InvalidOperation:  # pragma: no cover - finite decimals always scale
            continue
        if scaled == scaled.to_integral_value() and INT16[0] <= scaled <= INT16[1]:
            return {"multiplier": multiplier, "value": int(scaled)}
    raise InvalidValues(f"{what}: {watts} W cannot be written exactly as a 2030.5 ActivePower")


def _number(payload: Payload, what: str) -> Decimal:
    if len(payload.values) != 1:
        raise InvalidValues(f"{what} carries one value, not {len(payload.values)}")
    value = payload.values[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValues(f"{what} must be a number, not {value!r}")
    number = Decimal(str(value))
    if not number.is_finite():
        raise InvalidValues(f"{what} must be a finite number")
    return number


def _watts(payload: Payload, units: str | None, what: str) -> Decimal:
    factor = WATTS_PER_UNIT.get(units or "")
    if factor is None:
        known = ", ".join(WATTS_PER_UNIT)
        raise InvalidValues(
            f"{what}: units {units or 'missing'} cannot be converted to watts "
            f"(give units {known} in the event's or program's payloadDescriptors)"
        )
    return _number(payload, what) * factor


def _percent(payload: Payload, units: str | None, what: str) -> int:
    """OpenADR PERCENT (0.0-1.0) as a 2030.5 PerCent (hundredths of a percent, 0-10000)."""
    if units != "PERCENT":
        raise InvalidValues(f"{what}: needs units PERCENT to become opModMaxLimW")
    hundredths = (_number(payload, what) * 10000).to_integral_value()
    if not 0 <= hundredths <= 10000:
        raise InvalidValues(f"{what}: a percentage between 0.0 and 1.0")
    return int(hundredths)


@dataclass
class _Mapper:
    """Maps the payloads of one interval; collects what could not be mapped and why."""

    event: Event
    program: Program
    profile: str
    unmapped: dict[str, str]

    def base(self, interval: Interval) -> dict[str, Any]:
        base: dict[str, Any] = {}
        for payload in interval.payloads:
            what = f"interval {interval.id} payload {payload.type}"
            units = self.event.units(payload.type)
            mode = POWER_MODES.get(self.profile, {}).get(payload.type)
            if mode is not None:
                base[mode] = active_power(_watts(payload, units, what), what)
            elif payload.type == "SIMPLE":
                base.update(self._simple(payload, what))
            elif payload.type == "CONTROL_SETPOINT" and units == "PERCENT":
                base["opModMaxLimW"] = _percent(payload, units, what)
            elif payload.type.startswith("ALERT_"):
                continue  # a TextMessage, not a control
            else:
                self.unmapped.setdefault(payload.type, self._reason(payload.type))
        return base

    def _simple(self, payload: Payload, what: str) -> Mapping[str, Any]:
        level = payload.values[0] if len(payload.values) == 1 else None
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
            raise InvalidValues(f"{what} must be one level 0, 1, 2 or 3")
        chosen = self.program.simple_levels.get(level)
        if chosen is None:
            self.unmapped.setdefault(
                f"SIMPLE {level}", f"program {self.program.name} sets no control for level {level}"
            )
            return {}
        return chosen

    def _reason(self, payload_type: str) -> str:
        if payload_type in NOT_MAPPED:
            return NOT_MAPPED[payload_type]
        for profile, modes in POWER_MODES.items():
            if payload_type in modes and profile != self.profile:
                return f"{modes[payload_type]} exists only in the {profile} profile"
        if payload_type == "CONTROL_SETPOINT":
            return "only a CONTROL_SETPOINT in PERCENT has a 2030.5 mode (opModMaxLimW)"
        return "not a 2030.5 control: reaches VENs only"


def _randomize(interval: Interval) -> int | None:
    value = interval.randomize_start
    if value is not None and not 0 <= value <= ONE_HOUR:
        raise InvalidValues(
            f"interval {interval.id}: randomizeStart {value} s exceeds 2030.5's one hour"
        )
    return value or None


def _description(event: Event, interval_ids: Sequence[int]) -> str:
    first, last = interval_ids[0], interval_ids[-1]
    suffix = f" #{first}" if first == last else f" #{first}-{last}"
    return event.name[: DESCRIPTION_MAX - len(suffix)] + suffix


def _merge(event: Event, drafts: list[ControlDraft]) -> list[ControlDraft]:
    """Equal consecutive controls that touch become one."""
    merged: list[ControlDraft] = []
    for draft in drafts:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.end == draft.start
            and last.base == draft.base
            and last.randomize_start == draft.randomize_start
        ):
            ids = (*last.interval_ids, *draft.interval_ids)
            merged[-1] = ControlDraft(
                last.start,
                last.duration + draft.duration,
                last.base,
                _description(event, ids),
                ids,
                last.randomize_start,
                last.response_required,
            )
        else:
            merged.append(draft)
    return merged


def _messages(event: Event, program: Program, now: int) -> list[MessageDraft]:
    found: list[MessageDraft] = []
    origin = program.message_originator[:20]  # String20
    for interval in event.intervals:
        for payload in interval.payloads:
            if payload.type.startswith("ALERT_") and interval.end > now:
                words = " ".join(str(v) for v in payload.values if isinstance(v, str))
                text = words or payload.type.removeprefix("ALERT_").replace("_", " ").lower()
                priority = ALERT_PRIORITY.get(payload.type, 1)
                found.append(
                    MessageDraft(interval.start, interval.duration, text, priority, origin)
                )
    start, end = event.start, event.end
    lead = program.notice_lead
    if program.notice_before and start is not None and start > now:
        found.append(MessageDraft(start - lead, lead, program.notice_before, 1, origin))
    if program.notice_after and end is not None and end + lead > now:
        found.append(MessageDraft(end, lead, program.notice_after, 1, origin))
    return found


def plan(
    event: Event,
    program: Program,
    enrollments: Sequence[Enrollment],
    profile: str,
    now: int,
) -> tuple[GroupPlan, ...]:
    """Per enrolled group the event reaches: its contiguous controls, messages, and what was
    not mapped (with the reason). Raises InvalidValues, naming the payload, when a payload
    cannot be converted; then nothing of the event may be stored."""
    unmapped: dict[str, str] = {}
    mapper = _Mapper(event, program, profile, unmapped)
    drafts = []
    for interval in sorted(event.intervals, key=lambda i: (i.start, i.id)):
        if interval.duration <= 0:
            raise InvalidValues(f"interval {interval.id}: duration must be positive")
        base = mapper.base(interval)  # converted even when over: a bad payload is still bad
        if not base or interval.end <= now:
            continue
        drafts.append(
            ControlDraft(
                interval.start,
                interval.duration,
                base,
                _description(event, [interval.id]),
                (interval.id,),
                _randomize(interval),
            )
        )
    controls = tuple(_merge(event, drafts))
    messages = tuple(_messages(event, program, now))
    reasons = tuple(Unmapped(t, r) for t, r in sorted(unmapped.items()))
    return tuple(
        GroupPlan(enrollment, controls, messages, reasons)
        for enrollment in enrollments
        if event.reaches(enrollment.target)
    )
