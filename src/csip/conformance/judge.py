"""Judging expectations from recorded exchanges: pure functions of the record and `now`.

A verdict is "pending" until it is decided: a positive expectation passes as soon as what it
waits for is seen and fails when its window closes without it; a `no-request` fails at the
first offending request and passes when its window closes; a `period` needs its whole window.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from csip.conformance.exchanges import Exchange
from csip.conformance.procedures import Expectation

Verdict = Literal["pass", "fail", "pending"]

#: Which campaign pollRate governs how soon a device notices a change to a resource.
POLL_RATE_OF = {
    "DeviceCapability": "DeviceCapability",
    "Time": "Time",
    "EndDeviceList": "EndDeviceList",
    "EndDevice": "EndDeviceList",
    "Registration": "EndDeviceList",
    "FunctionSetAssignmentsList": "FunctionSetAssignmentsList",
    "FunctionSetAssignments": "FunctionSetAssignmentsList",
    "DERList": "DERList",
    "DER": "DERList",
    "DERCapability": "DERList",
    "DERSettings": "DERList",
    "DERStatus": "DERList",
    "DERAvailability": "DERList",
    "MirrorUsagePoint": "MirrorUsagePointList",
    "MirrorUsagePointList": "MirrorUsagePointList",
}


@dataclass
class Context:
    """What the runner created for one device and one procedure, to resolve names."""

    t0: float
    steps: dict[str, float] = field(default_factory=dict)
    controls: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {mrid, href}
    programs: dict[str, str] = field(default_factory=dict)  # name -> href
    poll_rates: dict[str, int] = field(default_factory=dict)
    post_rate: int | None = None

    def poll(self, resource: str | None) -> float:
        name = POLL_RATE_OF.get(resource or "", "DERProgramList")
        default = max(self.poll_rates.values(), default=300)
        return float(self.poll_rates.get(name, default))

    def to_json(self) -> dict[str, Any]:
        return {
            "t0": self.t0,
            "steps": self.steps,
            "controls": self.controls,
            "programs": self.programs,
            "poll_rates": self.poll_rates,
            "post_rate": self.post_rate,
        }


@dataclass
class Judgement:
    id: str
    description: str
    verdict: Verdict
    detail: str
    window: tuple[float, float]
    evidence: list[Exchange] = field(default_factory=list)
    #: seconds between the observed event and the expected time (see `timing_error`); None
    #: when nothing timed was observed (a no-request, a failure without the event)
    timing_error: float | None = None


def window(expectation: Expectation, context: Context) -> tuple[float, float] | None:
    """[open, close] in epoch seconds, or None while the anchor step has not happened."""
    anchor = context.t0 if expectation.anchor == "start" else context.steps.get(expectation.anchor)
    if anchor is None:
        return None
    resource = _resource(expectation)
    close = (
        anchor
        + expectation.within
        + expectation.within_polls * context.poll(resource)
        + expectation.tolerance
    )
    # the tolerance applies on both sides: a device acting a little early (its clock, the
    # second-resolution of 2030.5 times) is within it
    opened = (
        anchor + max(0.0, expectation.after - expectation.tolerance)
        if expectation.after
        else anchor
    )
    return opened, close


def timing_error(expectation: Expectation, context: Context, observed: list[float]) -> float | None:
    """How far the observed events fell outside the nominal window, in seconds (the largest).

    The nominal window is the expectation's without its tolerance: [anchor + after, anchor +
    within + within_polls x pollRate]. Where `after` equals `within` it is a moment (a control's
    start or end) and the error is the distance from it, early or late; a deadline ("within
    ...") is on time anywhere before it closes, and the error is how far past it, into the
    tolerance, the event came; a randomized start is on time anywhere in its range. A passing
    judgement's error is at most its tolerance, and the largest error of a campaign says how
    honest its timing judgements stayed under load.
    """
    span = window(expectation, context)
    if not observed or span is None:
        return None
    anchor = context.t0 if expectation.anchor == "start" else context.steps[expectation.anchor]
    nominal_open = anchor + expectation.after
    nominal_close = max(nominal_open, span[1] - expectation.tolerance)
    return max(max(0.0, nominal_open - t, t - nominal_close) for t in observed)


def _resource(expectation: Expectation) -> str:
    if expectation.kind == "response":
        return "DERControlList"
    return expectation.resource or (expectation.resources or ["DERControlList"])[-1]


def matches(exchange: Exchange, expectation: Expectation, context: Context, resource: str) -> bool:
    if exchange.resource != resource:
        return False
    if expectation.method != "ANY" and exchange.method != expectation.method:
        return False
    if expectation.http_status and exchange.status not in expectation.http_status:
        return False
    if resource == "Response" and not expectation.http_status and not 200 <= exchange.status < 300:
        return False  # a Response the server refused (say, under another LFDI) was not given
    if expectation.program is not None:
        href = context.programs.get(expectation.program, "\0")
        if not (exchange.path == href or exchange.path.startswith(href + "/")):
            return False
    if expectation.control is not None:
        control = context.controls.get(expectation.control, {})
        mrid = control.get("mrid", "\0").upper()
        if resource == "Response":
            if exchange.subject != mrid:
                return False
        elif exchange.path != control.get("href") and mrid not in exchange.mrids:
            return False
    return not (
        expectation.status
        and resource == "Response"
        and exchange.response_status not in expectation.status
    )


def _at(exchanges: list[Exchange], t0: float) -> str:
    return ", ".join(f"+{e.t - t0:.1f}s" for e in exchanges[:12]) + (
        " ..." if len(exchanges) > 12 else ""
    )


def judge(
    expectation: Expectation, exchanges: list[Exchange], context: Context, now: float
) -> Judgement:
    """The verdict on one expectation given the device's exchanges so far."""
    t0 = context.t0
    span = window(expectation, context)
    if span is None:
        return Judgement(
            expectation.id, expectation.description, "pending", "step not reached", (0.0, 0.0)
        )
    opened, closed = span
    rel = (opened - t0, closed - t0)
    over = now >= closed
    kind = expectation.kind

    def result(
        verdict: Verdict, detail: str, evidence: list[Exchange], timed: list[Exchange] | None = None
    ) -> Judgement:
        error = timing_error(expectation, context, [e.t for e in timed or []])
        return Judgement(
            expectation.id, expectation.description, verdict, detail, rel, evidence, error
        )

    if kind == "randomized":
        return _randomized(expectation, exchanges, context, opened, closed, over, result)
    if kind == "sequence":
        return _sequence(expectation, exchanges, context, opened, closed, over, result)
    resource = "Response" if kind == "response" else str(expectation.resource)
    hits = [e for e in exchanges if matches(e, expectation, context, resource)]
    inside = [e for e in hits if opened <= e.t <= closed]
    same_kind = [e for e in exchanges if e.resource == resource and e.t >= t0][-20:]
    where = f"between +{rel[0]:.1f}s and +{rel[1]:.1f}s"
    if kind == "no-request":
        if inside:
            return result("fail", f"{len(inside)} unwanted {where}: at {_at(inside, t0)}", inside)
        return result("pass" if over else "pending", f"none {where}", [])
    if kind == "response":
        early = [e for e in hits if e.t < opened]
        if early and expectation.after > 0:
            return result(
                "fail", f"sent too early, at {_at(early, t0)} (window opens +{rel[0]:.1f}s)", early
            )
        if inside:
            return result("pass", f"Response at {_at(inside, t0)}", inside, inside[:1])
        if not over:
            return result("pending", "waiting", [])
        control = context.controls.get(str(expectation.control), {})
        about = [e for e in same_kind if e.subject == control.get("mrid", "").upper()]
        seen = ", ".join(f"{e.response_status} at +{e.t - t0:.1f}s" for e in about) or "none"
        return result(
            "fail",
            f"no Response with status {expectation.status} for {expectation.control} "
            f"(mRID {control.get('mrid', '?')}) {where}; Responses seen for it: {seen}",
            same_kind,
        )
    if kind == "request":
        enough = len(inside) >= expectation.min_count
        too_many = expectation.max_count is not None and len(inside) > expectation.max_count
        if too_many:
            return result(
                "fail", f"{len(inside)} requests {where}, at most {expectation.max_count}", inside
            )
        need = f"need at least {expectation.min_count}"
        detail = f"{len(inside)} matching {where} ({need})" + (
            f": at {_at(inside, t0)}" if inside else ""
        )
        if enough and (expectation.max_count is None or over):
            return result("pass", detail, inside, inside[: expectation.min_count][-1:])
        return result("fail" if over else "pending", detail, inside or same_kind)
    # period: matching requests no further apart than the period (plus tolerance)
    if not over:
        return result("pending", "waiting for the window to close", [])
    period = _period(expectation, context)
    limit = period + expectation.tolerance
    times = [opened] + [e.t for e in inside] + [closed]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    worst = max(gaps)
    detail = (
        f"{len(inside)} {expectation.method} {resource} {where}; longest gap {worst:.1f}s, "
        f"allowed {period:.0f}s + {expectation.tolerance:.0f}s"
    )
    late = max(0.0, worst - period)
    if len(inside) >= 2 and worst <= limit:
        return Judgement(
            expectation.id, expectation.description, "pass", detail, rel, inside[:5], late
        )
    return result("fail", detail, inside or same_kind)


def _period(expectation: Expectation, context: Context) -> float:
    if expectation.period == "post_rate":
        return float(context.post_rate or 300)
    if expectation.period == "poll_rate":
        return context.poll(expectation.resource)
    return float(expectation.period or 0)


def _sequence(
    expectation: Expectation,
    exchanges: list[Exchange],
    context: Context,
    opened: float,
    closed: float,
    over: bool,
    result: Any,
) -> Judgement:
    wanted = list(expectation.resources)
    found: list[Exchange] = []
    for record in exchanges:
        if not opened <= record.t <= closed or len(found) == len(wanted):
            continue
        if matches(record, expectation, context, wanted[len(found)]):
            found.append(record)
    t0 = context.t0
    if len(found) == len(wanted):
        steps = " -> ".join(f"{e.resource} +{e.t - t0:.1f}s" for e in found)
        return result("pass", f"in order: {steps}", found, found[-1:])  # type: ignore[no-any-return]
    missing = wanted[len(found)]
    seen = " -> ".join(e.resource for e in found) or "nothing"
    detail = f"saw {seen} in order, then no {missing} before +{closed - t0:.1f}s"
    evidence = [e for e in exchanges if opened <= e.t <= closed][:30]
    return result("fail" if over else "pending", detail, evidence)  # type: ignore[no-any-return]


#: A Response this much after its control's nominal start shows a drawn, non-zero offset.
RANDOMIZED_AFTER = 1.0


def _randomized(
    expectation: Expectation,
    exchanges: list[Exchange],
    context: Context,
    opened: float,
    closed: float,
    over: bool,
    result: Any,
) -> Judgement:
    offsets: list[tuple[str, float, Exchange]] = []
    for name in expectation.controls:
        control = context.controls.get(name, {})
        mrid = control.get("mrid", "\0").upper()
        first = next(
            (
                e
                for e in exchanges
                if e.resource == "Response"
                and e.subject == mrid
                and e.response_status in expectation.status
                and 200 <= e.status < 300
                and opened <= e.t <= closed
            ),
            None,
        )
        if first is not None:
            offsets.append((name, first.t - float(control.get("start", first.t)), first))
    shown = ", ".join(f"{name} +{offset:.1f}s" for name, offset, _ in offsets) or "none"
    detail = f"offsets from the nominal starts: {shown}"
    evidence = [e for _, _, e in offsets]
    if any(offset >= RANDOMIZED_AFTER for _, offset, _ in offsets):
        return result("pass", detail, evidence)  # type: ignore[no-any-return]
    if len(offsets) == len(expectation.controls):
        return result(  # type: ignore[no-any-return]
            "fail", detail + ": every one at its nominal start, randomizeStart ignored", evidence
        )
    return result("fail" if over else "pending", detail, evidence)  # type: ignore[no-any-return]
