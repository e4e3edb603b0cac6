"""Admin API of the program engine: group target names, per-program choices (primacy, the
SIMPLE table, notices), enrollments, events posted by the utility (through the same VTN use
case a BL client reaches, so VENs get them too) and what each group got of an event."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from csip.domain.programs import DEFAULT_SEASONS, Enrollment, ProgramTerms
from csip.errors import BadRequest, InvalidValues
from csip.openadr.rules import EVENT, Principal
from csip.services.dispatch import DISPATCH_MODES, PER_DEVICE, DispatchService
from csip.services.engine import EngineService
from csip.services.settlement import SettlementService
from csip.services.vtn import VtnService
from csip.store.engine import ProgramChoices, terms_json
from csip.web import limits
from csip.web.paths import path_id

ENGINE = web.AppKey("engine", EngineService)
VTN = web.AppKey("vtn", VtnService)
SETTLEMENT = web.AppKey("settlement", SettlementService)
#: The admin API acts as a business-logic client with every scope when it posts events.
ADMIN_BL = Principal(
    "csip-admin",
    "bl",
    frozenset({"read_all", "write_programs", "write_events", "write_reports", "write_vens"}),
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetIn(_Body):
    target: str | None = Field(
        description="the group's OpenADR 3.1 target name (unique); null removes it",
        max_length=128,
    )


class TermsIn(_Body):
    """What the program promises its customers; absent: no such limit."""

    reserve_floor_percent: float | None = Field(default=None, ge=0, le=100)
    max_event_seconds: int | None = Field(default=None, gt=0)
    max_events_per_month: int | None = Field(default=None, ge=0)
    max_events_per_season: int | None = Field(default=None, ge=0)
    min_notice_seconds: int | None = Field(default=None, ge=0)
    seasons: list[tuple[int, int]] | None = Field(
        default=None, description="(first month, last month) pairs; default [[5, 10], [11, 4]]"
    )


class ChoicesIn(_Body):
    primacy: int = Field(10, ge=0, le=255, description="primacy of the program's DERPrograms")
    simple_levels: dict[int, dict[str, Any]] = Field(
        default_factory=dict,
        description="SIMPLE level (0-3) -> DERControlBase, e.g. {'1': {'opModTargetW': ...}}",
    )
    notice_before: str | None = Field(None, max_length=1000)
    notice_after: str | None = Field(None, max_length=1000)
    notice_lead: int = Field(3600, ge=0, le=7 * 86400)
    originator: str = Field("utility", min_length=1, max_length=20)
    terms: TermsIn = Field(default_factory=TermsIn)
    dispatch: str = Field(
        "group",
        description="group: each group's DERProgram gets the event's target as is; "
        "per-device: DISPATCH_SETPOINT and CHARGE_STATE_SETPOINT are shared among the "
        "group's batteries above their reserves, each in its own program (primacy - 1)",
    )

    @model_validator(mode="after")
    def _per_device_primacy(self) -> ChoicesIn:
        if self.dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch is one of {', '.join(DISPATCH_MODES)}")
        if self.dispatch == PER_DEVICE and self.primacy < 1:
            raise ValueError(
                "per-device dispatch needs primacy 1 or more: each device's own program is "
                "one primacy more important than its group's"
            )
        return self


class EnrollIn(_Body):
    group: int = Field(ge=1)


def choices_json(choices: ProgramChoices) -> dict[str, Any]:
    return {
        "program": choices.program_id,
        "primacy": choices.primacy,
        "simple_levels": {str(k): dict(v) for k, v in choices.simple_levels.items()},
        "notice_before": choices.notice_before,
        "notice_after": choices.notice_after,
        "notice_lead": choices.notice_lead,
        "originator": choices.originator,
        "terms": terms_json(choices.terms),
        "dispatch": choices.dispatch,
    }


def enrollment_json(program_id: str, enrollment: Enrollment) -> dict[str, Any]:
    return {
        "program": program_id,
        "group": enrollment.group_id,
        "target": enrollment.target or None,
        "der_program": enrollment.der_program_id,
        "der_program_href": f"/derp/{enrollment.der_program_id}",
    }


def _engine(request: web.Request) -> EngineService:
    return request.app[ENGINE]


def _raw(text: bytes) -> web.Response:
    return web.Response(body=text, content_type="application/json")


async def put_target(request: web.Request, body: TargetIn) -> web.Response:
    group = await _engine(request).set_target(path_id(request, "gid"), body.target)
    return web.json_response({"group": group.id, "target": group.target})


async def get_choices(request: web.Request) -> web.Response:
    return web.json_response(
        choices_json(await _engine(request).choices(request.match_info["oid"]))
    )


async def put_choices(request: web.Request, body: ChoicesIn) -> web.Response:
    choices = ProgramChoices(
        request.match_info["oid"],
        body.primacy,
        body.simple_levels,
        body.notice_before,
        body.notice_after,
        body.notice_lead,
        body.originator,
        _terms(body.terms),
        body.dispatch,
    )
    return web.json_response(choices_json(await _engine(request).set_choices(choices)))


def _terms(body: TermsIn) -> ProgramTerms:
    for first, last in body.seasons or ():
        if not (1 <= first <= 12 and 1 <= last <= 12):
            raise InvalidValues(f"season ({first}, {last}): months are 1-12")
    return ProgramTerms(
        body.reserve_floor_percent,
        body.max_event_seconds,
        body.max_events_per_month,
        body.max_events_per_season,
        body.min_notice_seconds,
        tuple(body.seasons) if body.seasons else DEFAULT_SEASONS,
    )


def _force(request: web.Request) -> bool:
    value = request.query.get("force", "false").lower()
    if value not in ("true", "false"):
        raise BadRequest("force is true or false")
    return value == "true"


async def list_enrollments(request: web.Request) -> web.Response:
    oid = request.match_info["oid"]
    found = await _engine(request).enrollments(oid)
    return web.json_response([enrollment_json(oid, e) for e in found])


async def post_enrollment(request: web.Request, body: EnrollIn) -> web.Response:
    oid = request.match_info["oid"]
    enrollment = await _engine(request).enroll(oid, body.group)
    return web.json_response(enrollment_json(oid, enrollment), status=201)


async def delete_enrollment(request: web.Request) -> web.Response:
    await _engine(request).unenroll(request.match_info["oid"], path_id(request, "gid"))
    return web.Response(status=204)


async def post_event(request: web.Request) -> web.Response:
    raw = await limits.read_body(request, limits.ADMIN_MAX_BODY)
    return web.Response(
        body=await request.app[VTN].create(ADMIN_BL, EVENT, raw, force=_force(request)),
        status=201,
        content_type="application/json",
    )


async def put_event(request: web.Request) -> web.Response:
    raw = await limits.read_body(request, limits.ADMIN_MAX_BODY)
    eid = request.match_info["eid"]
    return _raw(await request.app[VTN].update(ADMIN_BL, EVENT, eid, raw, force=_force(request)))


async def delete_event(request: web.Request) -> web.Response:
    return _raw(await request.app[VTN].delete(ADMIN_BL, EVENT, request.match_info["eid"]))


async def get_mapping(request: web.Request) -> web.Response:
    return web.json_response(await _engine(request).mapping(request.match_info["eid"]))


def _dispatch(request: web.Request) -> DispatchService:
    dispatch = _engine(request).dispatch
    assert isinstance(dispatch, DispatchService)
    return dispatch


async def get_dispatch(request: web.Request) -> web.Response:
    return web.json_response(await _dispatch(request).explain(request.match_info["eid"]))


async def post_dispatch(request: web.Request) -> web.Response:
    """Check the event's devices now and re-plan where needed, then show the plan."""
    eid = request.match_info["eid"]
    replanned = await _dispatch(request).check(eid)
    return web.json_response({"replanned": replanned, **await _dispatch(request).explain(eid)})


async def get_settlement(request: web.Request) -> web.Response:
    """JSON, or CSV with ?format=csv or Accept: text/csv (what `csip settle` prints)."""
    settled = await request.app[SETTLEMENT].settle(request.match_info["eid"])
    wants_csv = request.query.get("format") == "csv" or "text/csv" in request.headers.get(
        "Accept", ""
    )
    if wants_csv:
        return web.Response(text=settled.csv(), content_type="text/csv")
    return web.json_response(settled.json())


def routes() -> tuple[Any, ...]:
    """This module's part of the admin API's route table (see admin_app.ROUTES)."""
    from csip.web.admin_app import Route
    from csip.web.admin_programs import _with_body

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

    base = "/api/engine/programs/{oid}"
    return (
        route(
            "PUT",
            "/api/groups/{gid}/target",
            put_target,
            "Set (or clear) a group's OpenADR target name",
            TargetIn,
        ),
        route("GET", base, get_choices, "A program's engine choices (OpenADR program id)"),
        route(
            "PUT",
            base,
            put_choices,
            "Set a program's primacy, SIMPLE level table and notices",
            ChoicesIn,
        ),
        route("GET", base + "/enrollments", list_enrollments, "Groups enrolled in a program"),
        route(
            "POST",
            base + "/enrollments",
            post_enrollment,
            "Enroll a group: it gets a DERProgram and the program's events",
            EnrollIn,
            201,
        ),
        route(
            "DELETE",
            base + "/enrollments/{gid}",
            delete_enrollment,
            "Unenroll a group: its DERProgram is deleted, controls cancelled",
            ok=204,
        ),
        route(
            "POST",
            "/api/engine/events",
            post_event,
            "Post an OpenADR event as the utility (reaches groups and VENs); ?force=true "
            "calls it against the program's terms (recorded)",
            ok=201,
        ),
        route("PUT", "/api/engine/events/{eid}", put_event, "Update an event"),
        route("DELETE", "/api/engine/events/{eid}", delete_event, "Delete (cancel) an event"),
        route(
            "GET",
            "/api/engine/events/{eid}/mapping",
            get_mapping,
            "Per group: the controls an event became, its messages, what was not mapped",
        ),
        route(
            "GET",
            "/api/engine/events/{eid}/dispatch",
            get_dispatch,
            "Per-device dispatch of an event: per group each interval's target, what it "
            "could give and the shortfall; per device its inputs (SoC, reserve, limits, "
            "data age), setpoints and status; the re-plans and why",
        ),
        route(
            "POST",
            "/api/engine/events/{eid}/dispatch",
            post_dispatch,
            "Check an event's devices now (opt-outs, stale data, falling short) and "
            "re-plan where needed",
        ),
        route(
            "GET",
            "/api/engine/events/{eid}/settlement",
            get_settlement,
            "Energy above baseline per site and aggregator, and the program's total "
            "(?format=csv for CSV)",
        ),
    )
