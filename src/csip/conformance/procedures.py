"""Conformance procedures as data: one TOML file per procedure ID, loaded into typed models.

A file says which clause it checks, which devices it applies to, what the server sets up
before it starts (programs, default controls, controls, post rate), what the server does
while it runs (steps at given seconds: create, supersede or cancel a control, change a
default or a rate, hold notifications back, move the server clock), and what the device
must do in reply (expectations: which requests, in which order, within which window, which
Response status codes), with timing tolerances. Times in a file are seconds relative to the
procedure's start (real time, so devices in one campaign never share a time-driven state).

`load_file` refuses a malformed file with its name, line and reason (`ProcedureError`).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Device classes a lab.toml may declare and a procedure may apply to.
DEVICE_CLASSES = frozenset({"storage", "pv", "inverter", "load", "ev", "aggregator"})
#: Function sets a device may claim (2030.5 names, short).
FUNCTION_SETS = frozenset(
    {
        "DER",
        "DERCurve",
        "Metering",
        "MirrorMetering",
        "Subscription",
        "Response",
        "LogEvent",
        "Time",
        "FSA",
        "EndDevice",
        "Registration",
        "DeviceInformation",
        "PowerStatus",
    }
)
#: Resource kinds the recorder classifies requests into (see `exchanges.classify`).
RESOURCES = frozenset(
    {
        "DeviceCapability",
        "Time",
        "EndDeviceList",
        "EndDevice",
        "Registration",
        "DeviceInformation",
        "DeviceStatus",
        "PowerStatus",
        "FunctionSetAssignmentsList",
        "FunctionSetAssignments",
        "DERProgramList",
        "DERProgram",
        "DERControlList",
        "DERControl",
        "ActiveDERControlList",
        "DefaultDERControl",
        "DERCurveList",
        "DERCurve",
        "ResponseSetList",
        "Response",
        "SubscriptionList",
        "Subscription",
        "DERList",
        "DER",
        "DERCapability",
        "DERSettings",
        "DERStatus",
        "DERAvailability",
        "ConnectionPoint",
        "LogEventList",
        "LogEvent",
        "MirrorUsagePointList",
        "MirrorUsagePoint",
        "MirrorMeterReading",
        "Notification",
        "Other",
    }
)
#: Server-side checks server mode knows (see `servermode.CHECKS`).
SERVER_CHECKS = frozenset(
    {
        "discovery",
        "tls",
        "methods",
        "redirect",
        "paging",
        "time",
        "registration",
        "fsa-walk",
        "event-status",
        "responses",
        "mirror-usage-points",
        "subscriptions",
        "access-control",
        "error-answers",
        "der-documents",
    }
)
#: Steps that touch what every device sees: a procedure using one runs alone.
GLOBAL_ACTIONS = frozenset({"move-clock", "set-poll-rates"})

Seconds = Annotated[float, Field(ge=0, le=86_400)]


class ProcedureError(ValueError):
    """A procedure file that cannot be used: names the file, the line and the reason."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AppliesTo(_Model):
    classes: list[str] = Field(default_factory=lambda: sorted(DEVICE_CLASSES - {"aggregator"}))
    function_sets: list[str] = Field(default_factory=lambda: ["DER"])

    @model_validator(mode="after")
    def _known(self) -> AppliesTo:
        unknown = set(self.classes) - DEVICE_CLASSES
        if unknown:
            raise ValueError(
                f"unknown device class {sorted(unknown)}; use {sorted(DEVICE_CLASSES)}"
            )
        unknown = set(self.function_sets) - FUNCTION_SETS
        if unknown:
            raise ValueError(f"unknown function set {sorted(unknown)}; use {sorted(FUNCTION_SETS)}")
        return self


class ProgramSpec(_Model):
    """A DERProgram in the device's own group (its own FSA)."""

    name: str
    primacy: int = Field(ge=0, le=255)
    #: Where the program sits: "device" = the device's own leaf group, "parent" = one level
    #: up in the device's own group tree (the "system" / "transformer" of overlap tests).
    #: "next" = a second group the device is moved into by a `move-group` step.
    level: Literal["device", "parent", "next"] = "device"
    default_base: dict[str, Any] | None = None
    default_settings: dict[str, int] = Field(default_factory=dict)


class ControlSpec(_Model):
    """A DERControl; `start` is seconds after the moment the runner creates it."""

    name: str
    program: str
    start: float = Field(0, ge=-3600, le=86_400)
    duration: int = Field(gt=0, le=86_400)
    base: dict[str, Any]
    randomize_start: int | None = Field(None, ge=-3600, le=3600)
    randomize_duration: int | None = Field(None, ge=-3600, le=3600)
    response_required: str = "03"


class CurveSpec(_Model):
    """A DERCurve in a program; a control's mode names it as {curve = "NAME"}."""

    name: str
    program: str
    curve_type: int = Field(ge=0, le=255)
    points: list[tuple[int, int]] = Field(min_length=1, max_length=10)
    x_multiplier: int = 0
    y_multiplier: int = 0
    y_ref_type: int = 0
    extras: dict[str, Any] = Field(default_factory=dict)


class Preconditions(_Model):
    #: Depth of the device's own group tree (CORE-010 uses 7 levels, CORE-011 15).
    group_levels: int = Field(1, ge=1, le=15)
    programs: list[ProgramSpec] = Field(default_factory=list)
    curves: list[CurveSpec] = Field(default_factory=list)
    controls: list[ControlSpec] = Field(default_factory=list)
    #: The device's own MirrorUsagePoint postRate (seconds), set per device.
    post_rate: int | None = Field(None, gt=0)
    #: Global pollRates: a procedure that sets them runs alone.
    poll_rates: dict[str, int] = Field(default_factory=dict)


class Step(_Model):
    """A server action at `at` seconds after the procedure started."""

    name: str
    at: Seconds
    action: Literal[
        "create-control",
        "supersede-control",
        "cancel-control",
        "cancel-all",
        "set-default",
        "set-post-rate",
        "set-poll-rates",
        "update-program",
        "move-group",
        "hold-notifications",
        "move-clock",
        "delete-end-device",
    ]
    control: ControlSpec | None = None
    #: the control to supersede or cancel, by name
    target: str | None = None
    program: str | None = None
    base: dict[str, Any] | None = None
    settings: dict[str, int] = Field(default_factory=dict)
    primacy: int | None = Field(None, ge=0, le=255)
    rate: int | None = Field(None, gt=0)
    poll_rates: dict[str, int] = Field(default_factory=dict)
    seconds: float | None = Field(None, ge=-86_400 * 365, le=86_400 * 365)
    randomized: bool = False

    @model_validator(mode="after")
    def _fields_for_action(self) -> Step:
        needs: dict[str, tuple[str, ...]] = {
            "create-control": ("control",),
            "supersede-control": ("control", "target"),
            "cancel-control": ("target",),
            "cancel-all": (),
            "set-default": ("program",),
            "set-post-rate": ("rate",),
            "set-poll-rates": ("poll_rates",),
            "update-program": ("program", "primacy"),
            "move-group": (),
            "hold-notifications": ("seconds",),
            "move-clock": ("seconds",),
            "delete-end-device": (),
        }
        missing = [f for f in needs[self.action] if getattr(self, f) in (None, {}, [])]
        if missing:
            raise ValueError(f"action {self.action!r} needs {', '.join(missing)}")
        return self


class Expectation(_Model):
    """What the device must (or must not) do, judged from the recorded exchanges.

    kinds: `request` (at least `min_count`, at most `max_count` matching requests in the
    window), `no-request` (none), `sequence` (the `resources` in this order), `response`
    (a Response POST about `control` with a status in `status`), `period` (matching requests
    keep coming no further apart than `period` + tolerance: poll and post rates),
    `randomized` (the Responses with a status in `status` about the `controls`, each with a
    randomizeStart, are not all at their controls' nominal starts: one device with one event
    may draw an offset of 0, but a device that draws 0 for every one of several does not
    randomize; with randomizeStart R and n controls a conforming device fails 1 in (R+1)^n).
    The window opens `after` seconds after the anchor (`start` or a step's name), less the
    tolerance (a device may act that much early), and closes
    `within` seconds after it, plus `within_polls` times the campaign's pollRate of the
    resource, plus `tolerance`.
    """

    id: str
    description: str
    kind: Literal["request", "no-request", "sequence", "response", "period", "randomized"]
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "ANY"] = "GET"
    resource: str | None = None
    resources: list[str] = Field(default_factory=list)
    program: str | None = None
    control: str | None = None
    controls: list[str] = Field(default_factory=list)
    status: list[int] = Field(default_factory=list)
    http_status: list[int] = Field(default_factory=list)
    anchor: str = "start"
    after: float = Field(0, ge=0)
    within: float = Field(0, ge=0, le=86_400)
    within_polls: float = Field(0, ge=0, le=100)
    tolerance: float = Field(2, ge=0, le=3600)
    min_count: int = Field(1, ge=0)
    max_count: int | None = Field(None, ge=0)
    #: seconds, or the device's post rate, or the campaign's pollRate of the resource
    period: float | Literal["post_rate", "poll_rate"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Expectation:
        for name in [self.resource, *self.resources]:
            if name is not None and name not in RESOURCES:
                raise ValueError(f"unknown resource {name!r}")
        if self.kind == "sequence" and len(self.resources) < 2:
            raise ValueError("a sequence needs at least two resources")
        if self.kind in ("request", "no-request", "period") and self.resource is None:
            raise ValueError(f"a {self.kind} expectation needs a resource")
        if self.kind == "response" and (self.control is None or not self.status):
            raise ValueError("a response expectation needs control and status")
        if self.kind == "randomized" and (len(self.controls) < 2 or not self.status):
            raise ValueError("a randomized expectation needs two or more controls and status")
        if self.kind == "period" and self.period is None:
            raise ValueError("a period expectation needs period")
        if self.within == 0 and self.within_polls == 0:
            raise ValueError("give the window: within and/or within_polls")
        return self


class Procedure(_Model):
    id: str
    title: str
    catalogue: Literal["sunspec-csip", "csip-aus"] = "sunspec-csip"
    side: Literal["client", "server"]
    clause: str = Field(min_length=3)
    summary: str = Field(min_length=10)
    status: Literal["ready", "not-applicable"] = "ready"
    reason: str = ""
    applies_to: AppliesTo = Field(default_factory=lambda: AppliesTo.model_validate({}))
    #: Runs alone in a campaign (it moves the global clock or global poll rates).
    exclusive: bool = False
    preconditions: Preconditions = Field(default_factory=lambda: Preconditions.model_validate({}))
    steps: list[Step] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    #: Server mode: the server-side checks of this procedure (a client procedure may name
    #: the server half it relies on, too).
    checks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Procedure:
        if not re.fullmatch(r"[A-Z]+-\d{3}[A-Z]?(?: / \d{3})*", self.id):
            raise ValueError(f"id {self.id!r} is not a catalogue ID such as CORE-012")
        if self.status == "not-applicable":
            if len(self.reason) < 10:
                raise ValueError("a not-applicable procedure says why in `reason`")
            if self.steps or self.expect or self.checks:
                raise ValueError("a not-applicable procedure has no steps, expectations or checks")
            return self
        unknown = set(self.checks) - SERVER_CHECKS
        if unknown:
            raise ValueError(f"unknown server check {sorted(unknown)}")
        if self.side == "server":
            if not self.checks or self.expect or self.steps:
                raise ValueError("a server procedure lists its checks (and no expectations)")
            return self
        if not self.expect:
            raise ValueError("a ready client procedure needs at least one [[expect]]")
        self._check_names()
        return self

    def _check_names(self) -> None:
        programs = {p.name for p in self.preconditions.programs}
        controls = {c.name for c in self.preconditions.controls}
        steps: set[str] = set()
        for curve in self.preconditions.curves:
            if curve.program not in programs:
                raise ValueError(f"curve {curve.name!r}: no program {curve.program!r}")
        for control in self.preconditions.controls:
            if control.program not in programs:
                raise ValueError(f"control {control.name!r}: no program {control.program!r}")
        for step in self.steps:
            if step.name in steps:
                raise ValueError(f"two steps are named {step.name!r}")
            steps.add(step.name)
            if step.program is not None and step.program not in programs:
                raise ValueError(f"step {step.name!r}: no program {step.program!r}")
            if step.control is not None:
                if step.control.program not in programs:
                    raise ValueError(f"step {step.name!r}: no program {step.control.program!r}")
                controls.add(step.control.name)
            if step.target is not None and step.target not in controls:
                raise ValueError(f"step {step.name!r}: no control {step.target!r} before it")
            if step.action in GLOBAL_ACTIONS and not self.exclusive:
                raise ValueError(f"step {step.name!r} ({step.action}) needs exclusive = true")
        if self.preconditions.poll_rates and not self.exclusive:
            raise ValueError("global poll_rates in preconditions need exclusive = true")
        for expectation in self.expect:
            if expectation.anchor != "start" and expectation.anchor not in steps:
                raise ValueError(f"expect {expectation.id!r}: no step {expectation.anchor!r}")
            if expectation.program is not None and expectation.program not in programs:
                raise ValueError(f"expect {expectation.id!r}: no program {expectation.program!r}")
            if expectation.control is not None and expectation.control not in controls:
                raise ValueError(f"expect {expectation.id!r}: no control {expectation.control!r}")
            for name in expectation.controls:
                if name not in controls:
                    raise ValueError(f"expect {expectation.id!r}: no control {name!r}")
            if expectation.period == "post_rate" and self.preconditions.post_rate is None:
                raise ValueError(f"expect {expectation.id!r}: period post_rate needs post_rate")

    def file_name(self) -> str:
        return file_name(self.id)

    def applies(self, device_class: str, function_sets: set[str]) -> str | None:
        """None when the procedure applies to such a device, else why not."""
        if self.status == "not-applicable":
            return self.reason
        if device_class not in self.applies_to.classes:
            return f"not for {device_class} devices (for {', '.join(self.applies_to.classes)})"
        missing = set(self.applies_to.function_sets) - function_sets
        if missing:
            return f"the device does not claim {', '.join(sorted(missing))}"
        return None


def file_name(procedure_id: str) -> str:
    return procedure_id.replace(" / ", "_") + ".toml"


def default_directory() -> Path:
    """conformance/procedures of this checkout (the package is installed editable)."""
    return Path(__file__).resolve().parents[3] / "conformance" / "procedures"


# ---- loading ---------------------------------------------------------------------------
def _line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """The line a pydantic error location points at, found in the TOML text: the n-th
    [[table]] header for list items, then the key inside that block."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    index = 0
    while index < len(loc):
        key = loc[index]
        if not isinstance(key, str):
            index += 1
            continue
        nxt = loc[index + 1] if index + 1 < len(loc) else None
        headers = [
            n
            for n in range(start, end)
            if re.match(rf"\s*\[\[?\s*(?:[\w.-]+\.)?{re.escape(key)}\s*\]\]?\s*$", lines[n])
        ]
        if headers and isinstance(nxt, int) and nxt < len(headers):
            start = headers[nxt]
            later = [n for n in range(start + 1, end) if re.match(r"\s*\[", lines[n])]
            end = later[0] if later else end
            index += 2
            continue
        if headers:
            start = headers[0]
            later = [n for n in range(start + 1, end) if re.match(r"\s*\[", lines[n])]
            end = later[0] if later else end
            index += 1
            continue
        keyed = [n for n in range(start, end) if re.match(rf"\s*{re.escape(key)}\s*=", lines[n])]
        if keyed:
            return keyed[0] + 1
        break
    return start + 1


def load_text(text: str, path: Path) -> Procedure:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ProcedureError(path, int(match.group(1)) if match else 1, str(exc)) from None
    try:
        procedure = Procedure.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc) or "file"
        reason = f"{where}: {error['msg']}"
        if len(exc.errors()) > 1:
            reason += f" (and {len(exc.errors()) - 1} more)"
        raise ProcedureError(path, _line_of(text, loc), reason) from None
    expected = procedure.file_name()
    if path.name != expected and path.suffix == ".toml":
        raise ProcedureError(path, _line_of(text, ("id",)), f"id {procedure.id} needs {expected}")
    return procedure


def load_file(path: Path) -> Procedure:
    return load_text(path.read_text(encoding="utf-8"), path)


def load_all(directory: Path | None = None) -> dict[str, Procedure]:
    directory = directory or default_directory()
    procedures: dict[str, Procedure] = {}
    for path in sorted(directory.glob("*.toml")):
        procedure = load_file(path)
        procedures[procedure.id] = procedure
    return procedures


def select(procedures: dict[str, Procedure], patterns: str | None) -> list[Procedure]:
    """Procedures whose ID matches any comma-separated glob (CORE-*,BASIC-0*)."""
    chosen = list(procedures.values())
    if patterns:
        wanted = [p.strip() for p in patterns.split(",") if p.strip()]
        chosen = [p for p in chosen if any(fnmatch.fnmatchcase(p.id, w) for w in wanted)]
    return sorted(chosen, key=lambda p: _sort_key(p.id))


def _sort_key(procedure_id: str) -> tuple[str, int, str]:
    match = re.match(r"([A-Z]+)-(\d+)(.*)", procedure_id)
    if not match:
        return (procedure_id, 0, "")
    return (match.group(1), int(match.group(2)), match.group(3))
