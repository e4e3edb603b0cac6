"""Admin API for the DER function set: groups, memberships, programs, controls, defaults,
curves, cancellations and the responses devices sent (CLARIFICATIONS "What a lab needs")."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from csip.domain.der import Control, Curve, DefaultControl, Group, Program
from csip.services.programs import ControlSpec, ProgramService
from csip.web.paths import path_id

PROGRAM_ADMIN = web.AppKey("program_admin", ProgramService)
_M = TypeVar("_M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupIn(_Body):
    description: str = Field(min_length=1, max_length=32)
    level: str | None = Field(None, max_length=32, description="e.g. substation, feeder")
    parent: int | None = Field(None, description="parent group id; none = a root")


class MembersIn(_Body):
    lfdis: list[str] = Field(min_length=1, max_length=100_000)


class ProgramIn(_Body):
    description: str = Field(min_length=1, max_length=32)
    primacy: int = Field(ge=0, le=255)


class ProgramUpdate(_Body):
    description: str | None = Field(None, min_length=1, max_length=32)
    primacy: int | None = Field(None, ge=0, le=255)


class ControlIn(_Body):
    start: int = Field(description="epoch seconds")
    duration: int = Field(gt=0, le=0xFFFFFFFF)
    base: dict[str, Any] = Field(description="DERControlBase modes, only those given")
    description: str = Field("", max_length=32)
    randomize_start: int | None = Field(None, ge=-3600, le=3600)
    randomize_duration: int | None = Field(None, ge=-3600, le=3600)
    response_required: str | None = Field(None, description="hex byte, e.g. 03")


class ControlsIn(_Body):
    controls: list[ControlIn] = Field(min_length=1)


class TargetedControlIn(ControlIn):
    """A control for one device (its own group and program are made as needed) or a group."""

    lfdi: str | None = None
    group: int | None = None
    primacy: int = Field(ge=0, le=255)


class CancelIn(_Body):
    randomized: bool = False


class DefaultIn(_Body):
    base: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, int] = Field(
        default_factory=dict, description="setGradW, setSoftGradW, ..."
    )


class CurveIn(_Body):
    curve_type: int = Field(ge=0, le=255)
    points: list[tuple[int, int]] = Field(min_length=1, max_length=10)
    x_multiplier: int = Field(ge=-128, le=127)
    y_multiplier: int = Field(ge=-128, le=127)
    y_ref_type: int = Field(ge=0, le=255)
    description: str = Field("", max_length=32)
    extras: dict[str, Any] = Field(default_factory=dict, description="vRef, openLoopTms, ...")


def group_json(group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "mrid": group.mrid,
        "description": group.description,
        "level": group.level,
        "parent": group.parent_id,
        "href": group.href,
    }


def program_json(program: Program) -> dict[str, Any]:
    return {
        "id": program.id,
        "mrid": program.mrid,
        "group": program.group_id,
        "description": program.description,
        "primacy": program.primacy,
        "version": program.version,
        "href": program.href,
    }


def control_json(control: Control, status: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": control.id,
        "mrid": control.mrid,
        "program": control.program_id,
        "href": control.href,
        "start": control.start,
        "duration": control.duration,
        "base": dict(control.base),
        "creation_time": control.creation_time,
        "randomize_start": control.randomize_start,
        "randomize_duration": control.randomize_duration,
        "response_required": control.response_required,
        "cancelled_at": control.cancelled_at,
    }
    if status is not None:
        data["status"] = {
            "current": status.current.name.lower(),
            "date_time": status.date_time,
            "potentially_superseded": status.potentially_superseded,
            "reason": status.reason,
        }
    return data


def default_json(default: DefaultControl) -> dict[str, Any]:
    return {
        "program": default.program_id,
        "mrid": default.mrid,
        "base": dict(default.base),
        "settings": dict(default.settings),
        "version": default.version,
    }


def curve_json(curve: Curve) -> dict[str, Any]:
    return {
        "id": curve.id,
        "mrid": curve.mrid,
        "href": curve.href,
        "curve_type": curve.curve_type,
        "points": [list(p) for p in curve.points],
    }


def _svc(request: web.Request) -> ProgramService:
    return request.app[PROGRAM_ADMIN]


def _id(request: web.Request, name: str) -> int:
    return path_id(request, name)


def _spec(body: ControlIn) -> ControlSpec:
    return ControlSpec(
        start=body.start,
        duration=body.duration,
        base=body.base,
        description=body.description,
        randomize_start=body.randomize_start,
        randomize_duration=body.randomize_duration,
        response_required=body.response_required,
    )


async def list_groups(request: web.Request) -> web.Response:
    groups = await _svc(request).groups()
    return web.json_response([group_json(g) for g in groups.values()])


async def post_group(request: web.Request, body: GroupIn) -> web.Response:
    group = await _svc(request).create_group(body.description, body.level, body.parent)
    return web.json_response(group_json(group), status=201)


async def put_member(request: web.Request) -> web.Response:
    await _svc(request).set_member(_id(request, "gid"), request.match_info["lfdi"], True)
    return web.Response(status=204)


async def delete_member(request: web.Request) -> web.Response:
    await _svc(request).set_member(_id(request, "gid"), request.match_info["lfdi"], False)
    return web.Response(status=204)


async def post_members(request: web.Request, body: MembersIn) -> web.Response:
    added = await _svc(request).add_members(_id(request, "gid"), body.lfdis)
    return web.json_response({"added": added})


async def group_report(request: web.Request) -> web.Response:
    """What the utility reads per group: each device's DER documents, latest readings and
    responses (paged with offset/limit over the group's devices, sub-groups included)."""
    from csip.services.der_device import DerDeviceService
    from csip.services.telemetry import TelemetryService
    from csip.web.admin_app import _int_query

    svc = _svc(request)
    devices = await svc.group_devices(_id(request, "gid"))
    offset = _int_query(request, "offset", 0, 2**31)
    limit = _int_query(request, "limit", 100, 1000)
    der, telemetry = DerDeviceService(svc.sep2), TelemetryService(svc.sep2)
    report = []
    for device in devices[offset : offset + limit]:
        report.append(
            {
                "lfdi": device.lfdi,
                "href": device.href,
                "der": await der.der_json(device),
                "readings": await telemetry.device_readings(device, None, None, 100),
                "responses": (await svc.responses(lfdi=device.lfdi))[:20],
            }
        )
    return web.json_response({"total": len(devices), "offset": offset, "devices": report})


async def list_programs(request: web.Request) -> web.Response:
    programs = await _svc(request).der.programs(_id(request, "gid"))
    return web.json_response([program_json(p) for p in programs])


async def post_program(request: web.Request, body: ProgramIn) -> web.Response:
    program = await _svc(request).create_program(
        _id(request, "gid"), body.description, body.primacy
    )
    return web.json_response(program_json(program), status=201)


async def put_program(request: web.Request, body: ProgramUpdate) -> web.Response:
    program = await _svc(request).update_program(
        _id(request, "pid"), body.description, body.primacy
    )
    return web.json_response(program_json(program))


async def list_controls(request: web.Request) -> web.Response:
    state = await _svc(request).state(_id(request, "pid"))
    return web.json_response([control_json(c, state.statuses[c.id]) for c in state.controls])


async def post_controls(request: web.Request, body: ControlsIn) -> web.Response:
    specs = [_spec(c) for c in body.controls]
    created = await _svc(request).create_controls(_id(request, "pid"), specs)
    return web.json_response([control_json(c) for c in created], status=201)


async def post_targeted_control(request: web.Request, body: TargetedControlIn) -> web.Response:
    _, control = await _svc(request).create_targeted_control(
        _spec(body), lfdi=body.lfdi, group_id=body.group, primacy=body.primacy
    )
    return web.json_response(control_json(control), status=201)


async def cancel_program(request: web.Request, body: CancelIn) -> web.Response:
    cancelled = await _svc(request).cancel(
        program_id=_id(request, "pid"), randomized=body.randomized
    )
    return web.json_response({"cancelled": [c.mrid for c in cancelled]})


async def cancel_control(request: web.Request, body: CancelIn) -> web.Response:
    cancelled = await _svc(request).cancel(
        control_id=_id(request, "cid"), randomized=body.randomized
    )
    return web.json_response({"cancelled": [c.mrid for c in cancelled]})


async def cancel_device(request: web.Request, body: CancelIn) -> web.Response:
    lfdi = request.match_info["lfdi"]
    cancelled = await _svc(request).cancel(device_lfdi=lfdi, randomized=body.randomized)
    return web.json_response({"cancelled": [c.mrid for c in cancelled]})


async def put_default(request: web.Request, body: DefaultIn) -> web.Response:
    default = await _svc(request).put_default_control(_id(request, "pid"), body.base, body.settings)
    return web.json_response(default_json(default))


async def post_curve(request: web.Request, body: CurveIn) -> web.Response:
    svc = _svc(request)
    curve = Curve(
        id=0,
        mrid="",
        program_id=_id(request, "pid"),
        curve_type=body.curve_type,
        points=tuple(body.points),
        x_multiplier=body.x_multiplier,
        y_multiplier=body.y_multiplier,
        y_ref_type=body.y_ref_type,
        creation_time=svc.clock.now_int(),
        description=body.description,
        extras=body.extras,
    )
    return web.json_response(curve_json(await svc.create_curve(curve)), status=201)


async def program_responses(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).responses(program_id=_id(request, "pid")))


async def device_responses(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).responses(lfdi=request.match_info["lfdi"]))


def _with_body(model: type[_M], handler: Any) -> Any:
    """Parse and check the JSON body into `model`, then call handler(request, body)."""
    from csip.web.admin_app import parse_json

    async def wrapped(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request, await parse_json(request, model))
        return response

    wrapped.__name__ = handler.__name__
    return wrapped


def routes() -> tuple[Any, ...]:
    """This module's part of the admin API's route table (see admin_app.ROUTES)."""
    from csip.web.admin_app import Route

    def route(
        method: str,
        path: str,
        handler: Any,
        summary: str,
        model: type[BaseModel] | None = None,
        ok: int = 200,
    ) -> Route:
        wrapped = _with_body(model, handler) if model is not None else handler
        return Route(method, path, wrapped, summary, model, ok)

    return (
        route("GET", "/api/groups", list_groups, "List groups (FunctionSetAssignments)"),
        route("POST", "/api/groups", post_group, "Create a group", GroupIn, 201),
        route(
            "PUT",
            "/api/groups/{gid}/members/{lfdi}",
            put_member,
            "Add an EndDevice to a group",
            ok=204,
        ),
        route(
            "DELETE",
            "/api/groups/{gid}/members/{lfdi}",
            delete_member,
            "Remove an EndDevice from a group",
            ok=204,
        ),
        route(
            "POST",
            "/api/groups/{gid}/members",
            post_members,
            "Add many EndDevices to a group (one transaction)",
            MembersIn,
        ),
        route("GET", "/api/groups/{gid}/programs", list_programs, "Programs of a group"),
        route(
            "GET",
            "/api/groups/{gid}/report",
            group_report,
            "Per device of a group (and its sub-groups): DER status, readings, responses",
        ),
        route(
            "POST",
            "/api/groups/{gid}/programs",
            post_program,
            "Create a DERProgram",
            ProgramIn,
            201,
        ),
        route("PUT", "/api/programs/{pid}", put_program, "Update a DERProgram", ProgramUpdate),
        route(
            "GET",
            "/api/programs/{pid}/controls",
            list_controls,
            "Controls with their EventStatus now",
        ),
        route(
            "POST",
            "/api/programs/{pid}/controls",
            post_controls,
            "Publish DERControls (all or none)",
            ControlsIn,
            201,
        ),
        route(
            "POST",
            "/api/programs/{pid}/cancel",
            cancel_program,
            "Cancel every scheduled or active control",
            CancelIn,
        ),
        route(
            "PUT",
            "/api/programs/{pid}/default-control",
            put_default,
            "Create or replace the DefaultDERControl",
            DefaultIn,
        ),
        route("POST", "/api/programs/{pid}/curves", post_curve, "Create a DERCurve", CurveIn, 201),
        route(
            "GET",
            "/api/programs/{pid}/responses",
            program_responses,
            "Responses to the program's controls",
        ),
        route(
            "POST",
            "/api/controls",
            post_targeted_control,
            "A control for a device or group at a primacy",
            TargetedControlIn,
            201,
        ),
        route("POST", "/api/controls/{cid}/cancel", cancel_control, "Cancel one control", CancelIn),
        route(
            "POST",
            "/api/end-devices/{lfdi}/cancel",
            cancel_device,
            "Cancel every control reaching a device",
            CancelIn,
        ),
        route(
            "GET", "/api/end-devices/{lfdi}/responses", device_responses, "Responses a device sent"
        ),
    )
