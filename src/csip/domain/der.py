"""The DER function set's rules: groups, programs, controls and how their events evolve.

Pure: times are passed in. The server turns these into 2030.5 resources; the rules here decide
each DERControl's EventStatus (IEEE 2030.5 §12.1 events, §10.10 DER; CSIP IG §6):

* scheduled until its start, then active; cancelled or superseded wins over both;
* within one DERProgram a newer control (creationTime, then id) overlapping an older one in
  time supersedes it when it covers every mode the older one sets; when it covers only some,
  the older one is marked potentiallySuperseded (independent modes never supersede);
* across programs reaching the same devices, a higher-priority program (lower primacy) with an
  overlapping control in some shared mode marks the lower one potentiallySuperseded: the device
  resolves the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from csip.errors import InvalidValues

SEP = "sep"
CSIPAUS = "csipaus"


class ModeKind(IntEnum):
    BOOLEAN = 0
    INTEGER = 1
    POWER = 2  # ActivePower / ReactivePower: multiplier, value
    POWER_FACTOR = 3  # PowerFactorWithExcitation: displacement, excitation, multiplier
    FIXED_VAR = 4  # FixedVar: refType, value
    FREQ_DROOP = 5  # FreqDroopType: dBOF, dBUF, kOF, kUF, openLoopTms
    CURVE = 6  # DERCurveLink: href to a DERCurve of the same program


#: DERControlBase children in sep.xsd order, then the CSIP-AUS extensions (csipaus-core.xsd).
#: tests/unit/domain/test_der_modes.py checks this table against the schemas themselves.
MODES: tuple[tuple[str, ModeKind, str], ...] = (
    ("opModConnect", ModeKind.BOOLEAN, SEP),
    ("opModEnergize", ModeKind.BOOLEAN, SEP),
    ("opModFixedPFAbsorbW", ModeKind.POWER_FACTOR, SEP),
    ("opModFixedPFInjectW", ModeKind.POWER_FACTOR, SEP),
    ("opModFixedVar", ModeKind.FIXED_VAR, SEP),
    ("opModFixedW", ModeKind.INTEGER, SEP),
    ("opModFreqDroop", ModeKind.FREQ_DROOP, SEP),
    ("opModFreqWatt", ModeKind.CURVE, SEP),
    ("opModHFRTMayTrip", ModeKind.CURVE, SEP),
    ("opModHFRTMustTrip", ModeKind.CURVE, SEP),
    ("opModHVRTMayTrip", ModeKind.CURVE, SEP),
    ("opModHVRTMomentaryCessation", ModeKind.CURVE, SEP),
    ("opModHVRTMustTrip", ModeKind.CURVE, SEP),
    ("opModLFRTMayTrip", ModeKind.CURVE, SEP),
    ("opModLFRTMustTrip", ModeKind.CURVE, SEP),
    ("opModLVRTMayTrip", ModeKind.CURVE, SEP),
    ("opModLVRTMomentaryCessation", ModeKind.CURVE, SEP),
    ("opModLVRTMustTrip", ModeKind.CURVE, SEP),
    ("opModMaxLimW", ModeKind.INTEGER, SEP),
    ("opModTargetVar", ModeKind.POWER, SEP),
    ("opModTargetW", ModeKind.POWER, SEP),
    ("opModVoltVar", ModeKind.CURVE, SEP),
    ("opModVoltWatt", ModeKind.CURVE, SEP),
    ("opModWattPF", ModeKind.CURVE, SEP),
    ("opModWattVar", ModeKind.CURVE, SEP),
    ("rampTms", ModeKind.INTEGER, SEP),
    ("opModImpLimW", ModeKind.POWER, CSIPAUS),
    ("opModExpLimW", ModeKind.POWER, CSIPAUS),
    ("opModGenLimW", ModeKind.POWER, CSIPAUS),
    ("opModLoadLimW", ModeKind.POWER, CSIPAUS),
)
MODE_KINDS: dict[str, ModeKind] = {name: kind for name, kind, _ in MODES}
MODE_NAMESPACE: dict[str, str] = {name: ns for name, _, ns in MODES}

#: Sub-element order of the structured kinds (sep.xsd).
FIELDS: dict[ModeKind, tuple[str, ...]] = {
    ModeKind.POWER: ("multiplier", "value"),
    ModeKind.POWER_FACTOR: ("displacement", "excitation", "multiplier"),
    ModeKind.FIXED_VAR: ("refType", "value"),
    ModeKind.FREQ_DROOP: ("dBOF", "dBUF", "kOF", "kUF", "openLoopTms"),
}
#: rampTms is a parameter of a control, not a mode that can conflict with another control.
NOT_A_MODE = frozenset({"rampTms"})

#: DefaultDERControl's own settings after DERControlBase, in sep.xsd order.
DEFAULT_SETTINGS: tuple[str, ...] = (
    "setESDelay",
    "setESHighFreq",
    "setESHighVolt",
    "setESLowFreq",
    "setESLowVolt",
    "setESRampTms",
    "setESRandomDelay",
    "setGradW",
    "setSoftGradW",
)

#: DERCurve curveType for each curve mode (sep.xsd DERCurveType).
CURVE_TYPES: dict[str, int] = {
    "opModFreqWatt": 0,
    "opModHFRTMayTrip": 1,
    "opModHFRTMustTrip": 2,
    "opModHVRTMayTrip": 3,
    "opModHVRTMomentaryCessation": 4,
    "opModHVRTMustTrip": 5,
    "opModLFRTMayTrip": 6,
    "opModLFRTMustTrip": 7,
    "opModLVRTMayTrip": 8,
    "opModLVRTMomentaryCessation": 9,
    "opModLVRTMustTrip": 10,
    "opModVoltVar": 11,
    "opModVoltWatt": 12,
    "opModWattPF": 13,
    "opModWattVar": 14,
}


class Status(IntEnum):
    """EventStatus.currentStatus (sep.xsd)."""

    SCHEDULED = 0
    ACTIVE = 1
    CANCELLED = 2
    CANCELLED_RANDOMIZED = 3
    SUPERSEDED = 4


#: DERControlResponse status values a device may post (IEEE 2030.5 Table 27, DER rows).
RESPONSE_STATUSES: dict[int, str] = {
    1: "event received",
    2: "event started",
    3: "event completed",
    4: "opted out",
    5: "chose not to participate",
    6: "event cancelled",
    7: "event superseded",
    8: "partially completed, user opt-out",
    9: "partially completed, end device cancel",
    10: "completed, no user participation (previous opt-out)",
    252: "rejected: event expired",
    253: "rejected: invalid event parameters",
    254: "rejected: event not applicable",
}


@dataclass(frozen=True, slots=True)
class Group:
    """A FunctionSetAssignments: one node of the utility's group tree (any depth)."""

    id: int
    mrid: str
    description: str
    level: str | None
    parent_id: int | None
    created_at: int
    #: Its OpenADR 3.1 target name (unique): program events that name it reach the group.
    target: str | None = None

    @property
    def href(self) -> str:
        return f"/fsa/{self.id}"


@dataclass(frozen=True, slots=True)
class Program:
    id: int
    mrid: str
    group_id: int
    description: str
    primacy: int
    version: int
    created_at: int
    #: Deleted by the utility: it has left every device-facing list; its own hrefs still
    #: answer (every control Cancelled) so a device holding one learns what happened.
    deleted_at: int | None = None

    @property
    def href(self) -> str:
        return f"/derp/{self.id}"


@dataclass(frozen=True, slots=True)
class Control:
    id: int
    mrid: str
    program_id: int
    description: str
    creation_time: int
    start: int
    duration: int
    base: Mapping[str, Any]
    randomize_start: int | None = None
    randomize_duration: int | None = None
    response_required: str | None = None
    cancelled_at: int | None = None
    cancel_randomized: bool = False
    version: int = 0

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def modes(self) -> frozenset[str]:
        return frozenset(self.base) - NOT_A_MODE

    @property
    def href(self) -> str:
        return f"/derp/{self.program_id}/derc/{self.id}"

    def overlaps(self, other: Control) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class DefaultControl:
    program_id: int
    mrid: str
    base: Mapping[str, Any]
    settings: Mapping[str, int]
    version: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Curve:
    id: int
    mrid: str
    program_id: int
    curve_type: int
    points: tuple[tuple[int, int], ...]
    x_multiplier: int
    y_multiplier: int
    y_ref_type: int
    creation_time: int
    description: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def href(self) -> str:
        return f"/derp/{self.program_id}/dc/{self.id}"


@dataclass(frozen=True, slots=True)
class EventStatus:
    current: Status
    date_time: int
    potentially_superseded: bool = False
    potentially_superseded_time: int | None = None
    reason: str | None = None


def _newer(a: Control, b: Control) -> bool:
    return (a.creation_time, a.id) > (b.creation_time, b.id)


def event_statuses(
    controls: Sequence[Control],
    now: int,
    higher_priority: Iterable[Control] = (),
) -> dict[int, EventStatus]:
    """EventStatus of every control of one program at `now`.

    `higher_priority` are the controls of other programs that reach the same devices with a
    lower (more important) primacy.
    """
    others = list(higher_priority)
    statuses: dict[int, EventStatus] = {}
    for control in controls:
        if control.cancelled_at is not None and control.cancelled_at <= now:
            current = Status.CANCELLED_RANDOMIZED if control.cancel_randomized else Status.CANCELLED
            statuses[control.id] = EventStatus(current, control.cancelled_at, reason="cancelled")
            continue
        superseded_by: Control | None = None
        partial_at: int | None = None
        for other in controls:
            if other.id == control.id or not _newer(other, control) or other.creation_time > now:
                continue
            if not other.overlaps(control) or not (other.modes & control.modes):
                continue
            if control.modes <= other.modes:
                # final: cancelling the newer control later does not revive this one
                if superseded_by is None or _newer(superseded_by, other):
                    superseded_by = other
            elif other.cancelled_at is None or other.cancelled_at > now:
                partial_at = min(partial_at or other.creation_time, other.creation_time)
        for other in others:
            active = other.cancelled_at is None or other.cancelled_at > now
            if active and other.overlaps(control) and other.modes & control.modes:
                moment = max(other.creation_time, control.creation_time)
                partial_at = min(partial_at or moment, moment)
        if superseded_by is not None:
            reason = f"superseded by {superseded_by.mrid}"
            moment = superseded_by.creation_time
            statuses[control.id] = EventStatus(Status.SUPERSEDED, moment, reason=reason)
            continue
        if now >= control.start:
            status = EventStatus(Status.ACTIVE, control.start)
        else:
            status = EventStatus(Status.SCHEDULED, control.creation_time)
        if partial_at is not None:
            status = EventStatus(status.current, status.date_time, True, partial_at)
        statuses[control.id] = status
    return statuses


def latest_end(control: Control) -> int:
    """The last moment any device can still be running the control: its end pushed out by
    the largest randomization it allows (IEEE 2030.5 §12.1.3.2: a device may start up to
    randomizeStart late and stretch the duration by up to randomizeDuration; negative
    randomizations only move it earlier)."""
    late_start = max(0, control.randomize_start or 0)
    stretch = max(0, control.randomize_duration or 0)
    return control.start + late_start + control.duration + stretch


def is_over(control: Control, now: int) -> bool:
    """Past its latest end: the event is history. It leaves the device-facing lists
    (DERControlList, ActiveDERControlList) and the admin API reads it as completed."""
    return now >= latest_end(control)


def is_active(control: Control, status: EventStatus, now: int) -> bool:
    """In ActiveDERControlList: active status, started and not yet over."""
    return status.current is Status.ACTIVE and control.start <= now < latest_end(control)


def next_boundary(controls: Iterable[Control], now: int) -> int | None:
    """The next instant after `now` at which some control's status or activity changes."""
    upcoming = [
        moment
        for control in controls
        for moment in (control.start, control.end, latest_end(control), control.cancelled_at)
        if moment is not None and moment > now
    ]
    return min(upcoming) if upcoming else None


def check_base(base: Mapping[str, Any], profile: str, curves: Mapping[int, Curve]) -> None:
    """Reject unknown modes, wrong shapes and curve links to curves of the wrong type."""
    for name, value in base.items():
        kind = MODE_KINDS.get(name)
        if kind is None:
            raise InvalidValues(f"unknown DERControlBase element {name!r}")
        if MODE_NAMESPACE[name] == CSIPAUS and profile != "csip-aus":
            raise InvalidValues(f"{name} is a CSIP-AUS extension: use the csip-aus profile")
        if kind is ModeKind.BOOLEAN and not isinstance(value, bool):
            raise InvalidValues(f"{name} must be true or false")
        if kind is ModeKind.INTEGER and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidValues(f"{name} must be an integer")
        if kind in FIELDS and (not isinstance(value, Mapping) or set(value) != set(FIELDS[kind])):
            raise InvalidValues(f"{name} must be an object with {', '.join(FIELDS[kind])}")
        if kind is ModeKind.CURVE:
            if not isinstance(value, Mapping) or set(value) != {"curve"}:
                raise InvalidValues(f"{name} must be {{'curve': <curve id>}}")
            curve = curves.get(value["curve"]) if isinstance(value["curve"], int) else None
            if curve is None:
                raise InvalidValues(f"{name}: no curve {value['curve']!r} in this program")
            if curve.curve_type != CURVE_TYPES[name]:
                raise InvalidValues(f"{name} needs a curve of curveType {CURVE_TYPES[name]}")
