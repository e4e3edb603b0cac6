"""Rendering the DER function set's resources in sep.xsd element order.

Runs once per change or time boundary (render once, serve many), never per poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from csip.domain.der import (
    CSIPAUS,
    DEFAULT_SETTINGS,
    FIELDS,
    MODES,
    Control,
    Curve,
    DefaultControl,
    EventStatus,
    Group,
    ModeKind,
    Program,
)
from csip.sep2.xml import AUS, E, link, serialize


def _identified(mrid: str, description: str | None, version: int | None) -> list[Any]:
    children = [E.mRID(mrid)]
    if description:
        children.append(E.description(description[:32]))
    if version is not None:
        children.append(E.version(str(version)))
    return children


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def control_base(base: Mapping[str, Any], curve_href: Mapping[int, str]) -> Any:
    """DERControlBase with only the modes given, in schema order; values exactly as given."""
    children = []
    for name, kind, namespace in MODES:
        if name not in base:
            continue
        maker = AUS if namespace == CSIPAUS else E
        value = base[name]
        if kind is ModeKind.CURVE:
            children.append(maker(name, href=curve_href[value["curve"]]))
        elif kind in FIELDS:
            parts = [E(part, _value(value[part])) for part in FIELDS[kind]]
            children.append(maker(name, *parts))
        else:
            children.append(maker(name, _value(value)))
    return E.DERControlBase(*children)


def _event_status(status: EventStatus) -> Any:
    children = [
        E.currentStatus(str(int(status.current))),
        E.dateTime(str(status.date_time)),
        E.potentiallySuperseded(_value(status.potentially_superseded)),
    ]
    if status.potentially_superseded_time is not None:
        children.append(E.potentiallySupersededTime(str(status.potentially_superseded_time)))
    if status.reason:
        children.append(E.reason(status.reason[:192]))
    return E.EventStatus(*children)


#: EventStatus is the same element in every event function set (DER, Messaging).
event_status_element = _event_status


def _control_element(
    control: Control, status: EventStatus, reply_to: str, curve_href: Mapping[int, str]
) -> Any:
    children = _identified(control.mrid, control.description, control.version)
    children += [
        E.creationTime(str(control.creation_time)),
        _event_status(status),
        E.interval(E.duration(str(control.duration)), E.start(str(control.start))),
    ]
    if control.randomize_duration is not None:
        children.append(E.randomizeDuration(str(control.randomize_duration)))
    if control.randomize_start is not None:
        children.append(E.randomizeStart(str(control.randomize_start)))
    children.append(control_base(control.base, curve_href))
    attributes = {"href": control.href, "subscribable": "0"}
    if control.response_required is not None:
        attributes["responseRequired"] = control.response_required
        attributes["replyTo"] = reply_to
    return E.DERControl(*children, **attributes)


def der_control(
    control: Control, status: EventStatus, reply_to: str, curve_href: Mapping[int, str]
) -> bytes:
    return serialize(_control_element(control, status, reply_to, curve_href))


def der_control_list(
    href: str,
    total: int,
    page: Sequence[tuple[Control, EventStatus]],
    reply_to: str,
    curve_href: Mapping[int, str],
) -> bytes:
    element = E.DERControlList(
        *(_control_element(c, s, reply_to, curve_href) for c, s in page),
        href=href,
        all=str(total),
        results=str(len(page)),
        subscribable="1" if href.endswith("/derc") else "0",
    )
    return serialize(element)


def _program_element(program: Program, counts: Mapping[str, int], has_default: bool) -> Any:
    base = program.href
    children = _identified(program.mrid, program.description, program.version)
    children.append(link("ActiveDERControlListLink", f"{base}/actderc", counts["active"]))
    if has_default:
        children.append(link("DefaultDERControlLink", f"{base}/dderc"))
    children.append(link("DERControlListLink", f"{base}/derc", counts["controls"]))
    children.append(link("DERCurveListLink", f"{base}/dc", counts["curves"]))
    children.append(E.primacy(str(program.primacy)))
    return E.DERProgram(*children, href=base, subscribable="0")


def der_program(program: Program, counts: Mapping[str, int], has_default: bool) -> bytes:
    return serialize(_program_element(program, counts, has_default))


def der_program_list(
    href: str,
    total: int,
    page: Sequence[tuple[Program, Mapping[str, int], bool]],
    poll_rate: int,
) -> bytes:
    element = E.DERProgramList(
        *(_program_element(p, c, d) for p, c, d in page),
        href=href,
        all=str(total),
        results=str(len(page)),
        subscribable="1",
        pollRate=str(poll_rate),
    )
    return serialize(element)


def _fsa_element(group: Group, programs: int, messaging: int) -> Any:
    """`programs`: its DERPrograms; `messaging`: its MessagingPrograms (0 or 1)."""
    return E.FunctionSetAssignments(
        link("DERProgramListLink", f"{group.href}/derp", programs),
        link("MessagingProgramListLink", f"{group.href}/msg", messaging),
        link("TimeLink", "/tm"),
        *_identified(group.mrid, group.description, 0),
        href=group.href,
        subscribable="0",
    )


def function_set_assignments(group: Group, programs: int, messaging: int = 0) -> bytes:
    return serialize(_fsa_element(group, programs, messaging))


def function_set_assignments_list(
    href: str, total: int, page: Sequence[tuple[Group, int, int]], poll_rate: int
) -> bytes:
    element = E.FunctionSetAssignmentsList(
        *(_fsa_element(g, n, m) for g, n, m in page),
        href=href,
        all=str(total),
        results=str(len(page)),
        subscribable="1",
        pollRate=str(poll_rate),
    )
    return serialize(element)


def default_der_control(default: DefaultControl, href: str, curve_href: Mapping[int, str]) -> bytes:
    children = _identified(default.mrid, None, default.version)
    children.append(control_base(default.base, curve_href))
    for name in DEFAULT_SETTINGS:
        if name in default.settings:
            children.append(E(name, str(default.settings[name])))
    return serialize(E.DefaultDERControl(*children, href=href, subscribable="1"))


_CURVE_BEFORE = ("autonomousVRefEnable", "autonomousVRefTimeConstant")
_CURVE_AFTER = ("openLoopTms", "rampDecTms", "rampIncTms", "rampPT1Tms", "vRef")


def _curve_element(curve: Curve) -> Any:
    children = _identified(curve.mrid, curve.description, 0)
    children += [
        E(name, _value(curve.extras[name])) for name in _CURVE_BEFORE if name in curve.extras
    ]
    children.append(E.creationTime(str(curve.creation_time)))
    children += [E.CurveData(E.xvalue(str(x)), E.yvalue(str(y))) for x, y in curve.points]
    children.append(E.curveType(str(curve.curve_type)))
    children += [
        E(name, _value(curve.extras[name])) for name in _CURVE_AFTER if name in curve.extras
    ]
    children += [
        E.xMultiplier(str(curve.x_multiplier)),
        E.yMultiplier(str(curve.y_multiplier)),
        E.yRefType(str(curve.y_ref_type)),
    ]
    return E.DERCurve(*children, href=curve.href)


def der_curve(curve: Curve) -> bytes:
    return serialize(_curve_element(curve))


def der_curve_list(href: str, total: int, page: Sequence[Curve]) -> bytes:
    element = E.DERCurveList(
        *(_curve_element(c) for c in page), href=href, all=str(total), results=str(len(page))
    )
    return serialize(element)


def _response_set_element(program: Program, responses: int) -> Any:
    """sep.xsd ResponseSet: IdentifiedObject's mRID and description, then ResponseListLink."""
    return E.ResponseSet(
        *_identified(program.mrid, program.description, None),
        link("ResponseListLink", f"/rsps/{program.id}/rsp", responses),
        href=f"/rsps/{program.id}",
    )


def response_set(program: Program, responses: int) -> bytes:
    return serialize(_response_set_element(program, responses))


def response_set_list(href: str, total: int, page: Sequence[tuple[Program, int]]) -> bytes:
    sets = [_response_set_element(p, count) for p, count in page]
    element = E.ResponseSetList(*sets, href=href, all=str(total), results=str(len(page)))
    return serialize(element)


def _response_element(href: str, r: Mapping[str, Any]) -> Any:
    return E.Response(
        E.createdDateTime(str(r["created_date_time"])),
        E.endDeviceLFDI(r["lfdi"]),
        E.status(str(r["status"])),
        E.subject(r["subject"]),
        href=f"{href}/{r['id']}",
    )


def response(href: str, r: Mapping[str, Any]) -> bytes:
    """One Response (the DERControlResponse a device posted), at `{href}/{id}`."""
    return serialize(_response_element(href, r))


def response_list(href: str, total: int, page: Sequence[Mapping[str, Any]]) -> bytes:
    responses = [_response_element(href, r) for r in page]
    element = E.ResponseList(*responses, href=href, all=str(total), results=str(len(page)))
    return serialize(element)
