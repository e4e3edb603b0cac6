"""The console's pages: each handler reads a service and renders a template (routing only)."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

from aiohttp import web

from csip.errors import BadRequest, NotFound
from csip.services.console import PAYLOAD_TYPES, EventDelivery, EventForm, FleetQuery
from csip.services.operators import LoginRefused, audit_json
from csip.web.console import (
    CONSOLE,
    FORM,
    LOGIN_COOKIE,
    OPERATORS,
    PREFIX,
    SESSION_COOKIE,
    login_token,
    operator_of,
    render,
    set_cookie,
)
from csip.web.console.plots import line_chart, timeline

_CSS = resources.files("csip.web.console").joinpath("static/console.css").read_bytes()


def _svc(request: web.Request) -> Any:
    return request.app[CONSOLE]


def _form(request: web.Request) -> Any:
    return request[FORM]


async def stylesheet(_request: web.Request) -> web.Response:
    response = web.Response(body=_CSS, content_type="text/css")
    response.headers["Cache-Control"] = "max-age=3600"
    return response


async def index(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"{PREFIX}/fleet")


# ---- login and logout ---------------------------------------------------------------------
async def login_form(request: web.Request, problem: str = "", status: int = 200) -> web.Response:
    token = login_token()
    response = render(request, "login.html", http_status=status, login_csrf=token, problem=problem)
    set_cookie(request, response, LOGIN_COOKIE, token)
    return response


async def get_login(request: web.Request) -> web.Response:
    return await login_form(request)


async def post_login(request: web.Request) -> web.Response:
    form = _form(request)
    try:
        done = await request.app[OPERATORS].login(
            str(form.get("name", "")), str(form.get("password", ""))
        )
    except LoginRefused as exc:
        return await login_form(request, exc.detail, 401)
    response = web.HTTPSeeOther(f"{PREFIX}/fleet")
    set_cookie(request, response, SESSION_COOKIE, done.token)
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    raise response


async def post_logout(request: web.Request) -> web.Response:
    await request.app[OPERATORS].logout(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    raise response


# ---- fleet ----------------------------------------------------------------------------------
def _int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) < 10 else None


async def get_fleet(request: web.Request) -> web.Response:
    q = request.query
    query = FleetQuery(
        search=q.get("q", "").strip()[:64],
        oem=q.get("oem", ""),
        der_class=q.get("class", ""),
        group=_int(q.get("group")),
        aggregator=q.get("aggregator", ""),
        page=_int(q.get("page")) or 0,
    )
    page = await _svc(request).fleet_page(query)
    return render(request, "fleet.html", page=page, query=query)


async def get_device(request: web.Request) -> web.Response:
    found = await _svc(request).device(request.match_info["lfdi"])
    plots = []
    for reading_type in found["readings"]["reading_types"]:
        points = [(r["start"], r["physical"]) for r in reading_type["readings"]]
        unit = reading_type["reading_type"]["unit"] or ""
        name = reading_type["description"] or reading_type["mirror_meter_reading"]
        plots.append(line_chart([(name, points)], title=f"{name} (last 24 h)", unit=unit))
    return render(request, "device.html", plots=plots, **found)


# ---- programs and events -------------------------------------------------------------------
async def get_programs(request: web.Request, form: EventForm | None = None) -> web.Response:
    svc = _svc(request)
    timelines = await svc.timelines()
    now = svc.now()
    charts = {
        t.id: timeline(
            [(e.name, e.start, e.end, e.status, f"{PREFIX}/events/{e.id}") for e in t.events[-30:]],
            now=now,
        )
        for t in timelines
    }
    programs = await svc.program_choices()
    blank = EventForm(program=programs[0][0] if programs else "")
    return render(
        request,
        "programs.html",
        http_status=400 if form is not None else 200,
        timelines=timelines,
        charts=charts,
        form=form or blank,
        programs=programs,
        targets=await svc.target_names(),
        payload_types=PAYLOAD_TYPES,
    )


async def post_event(request: web.Request) -> web.Response:
    form = EventForm.of(_form(request), _form(request).getall("targets", []))
    try:
        event_id = await _svc(request).create_event(operator_of(request), form)
    except BadRequest as exc:
        if not form.problems:
            form.problems = {"event": exc.detail}
        return await get_programs(request, form)
    raise web.HTTPSeeOther(f"{PREFIX}/events/{event_id}")


async def get_event(request: web.Request, form: EventForm | None = None) -> web.Response:
    svc = _svc(request)
    event_id = request.match_info["eid"]
    found = await svc.event(event_id)
    return render(
        request,
        "event.html",
        http_status=400 if form is not None else 200,
        form=form or EventForm.from_event(found["event"]),
        programs=await svc.program_choices(),
        targets=await svc.target_names(),
        payload_types=PAYLOAD_TYPES,
        **found,
    )


async def post_event_update(request: web.Request) -> web.Response:
    form = EventForm.of(_form(request), _form(request).getall("targets", []))
    event_id = request.match_info["eid"]
    try:
        await _svc(request).update_event(operator_of(request), event_id, form)
    except BadRequest as exc:
        if not form.problems:
            form.problems = {"event": exc.detail}
        return await get_event(request, form)
    raise web.HTTPSeeOther(f"{PREFIX}/events/{event_id}")


async def post_event_cancel(request: web.Request) -> web.Response:
    event_id = request.match_info["eid"]
    await _svc(request).cancel_event(operator_of(request), event_id)
    raise web.HTTPSeeOther(f"{PREFIX}/events/{event_id}")


# ---- capacity and settlement --------------------------------------------------------------
def _scope(raw: str) -> dict[str, Any]:
    kind, _, value = raw.partition(":")
    if kind == "group" and value.isdigit():
        return {"group": int(value)}
    if kind == "aggregator" and value:
        return {"aggregator": value}
    if kind == "program" and value:
        return {"program": value}
    return {}


async def get_capacity(request: web.Request) -> web.Response:
    svc = _svc(request)
    scope_text = request.query.get("scope", "")
    problem = ""
    try:
        report = await svc.capacity(**_scope(scope_text))
    except NotFound as exc:
        problem = exc.detail
        report = await svc.capacity()
        scope_text = ""
    capacity = report.capacity
    points = [capacity.now, *capacity.forecast]
    power = line_chart(
        [("kW above reserve", [(p.at, p.power_w / 1000) for p in points])],
        title="Power it can hold for an hour, now and the next 24 h",
        unit="kW",
        marker=capacity.now.at,
    )
    energy = line_chart(
        [("kWh above reserve", [(p.at, p.energy_wh / 1000) for p in points])],
        title="Energy above reserve, now and the next 24 h",
        unit="kWh",
        marker=capacity.now.at,
    )
    page = await svc.fleet_page(FleetQuery())
    events = await svc.settleable_events()
    shown = request.query.get("event")
    delivery = await svc.delivery(shown) if shown else await svc.latest_delivery(events)
    return render(
        request,
        "capacity.html",
        report=report,
        capacity=capacity,
        power=power,
        energy=energy,
        scope=scope_text,
        problem=problem,
        groups=page.groups,
        aggregators=page.aggregators,
        programs=await svc.program_choices(),
        events=events,
        delivery=delivery,
        delivery_chart=None if delivery is None else _delivery_chart(delivery, svc.now()),
    )


def _delivery_chart(delivery: EventDelivery, now: int) -> Any:
    """Requested and delivered kW as steps: each interval's figure held across it (the
    interval in progress drawn up to now)."""
    asked: list[tuple[float, float]] = []
    given: list[tuple[float, float]] = []
    for d in delivery.intervals:
        if d.requested_kw is not None:
            asked += [(d.start, d.requested_kw), (d.end, d.requested_kw)]
        if d.delivered_kw is not None:
            given += [
                (d.start, d.delivered_kw),
                (min(d.end, max(now, d.start + 1)), d.delivered_kw),
            ]
    return line_chart(
        [("requested kW", asked), ("delivered kW", given)],
        title=f"{delivery.name}: requested vs delivered",
        unit="kW",
        marker=now if delivery.intervals and delivery.intervals[0].start <= now else None,
        ordered=True,
    )


async def get_settlement(request: web.Request) -> web.Response:
    event_id = request.match_info["eid"]
    settled = await _svc(request).settle(event_id)
    if request.query.get("format") == "csv":
        response = web.Response(text=settled.csv(), content_type="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="settlement-{event_id}.csv"'
        )
        return response
    svc = _svc(request)
    delivery = await svc.delivery(event_id)
    return render(
        request,
        "settlement.html",
        settlement=settled.json(),
        event_id=event_id,
        delivery=delivery,
        delivery_chart=_delivery_chart(delivery, svc.now()),
    )


# ---- conformance, VTN, audit --------------------------------------------------------------
async def get_conformance(request: web.Request) -> web.Response:
    svc = _svc(request)
    return render(
        request, "conformance.html", campaigns=svc.campaigns(), results_dir=svc.results_dir
    )


async def get_campaign(request: web.Request) -> web.Response:
    campaign = _svc(request).campaign(request.match_info["name"])
    devices = sorted({r.device for r in campaign.results})
    return render(
        request,
        "campaign.html",
        name=request.match_info["name"],
        campaign=campaign,
        matrix=campaign.matrix(),
        devices=devices,
        counts=campaign.counts(),
    )


async def get_vtn(request: web.Request) -> web.Response:
    return render(request, "vtn.html", **await _svc(request).vtn_overview())


async def get_audit(request: web.Request) -> web.Response:
    page = _int(request.query.get("page")) or 0
    total, entries = await request.app[OPERATORS].audit_log(page * 50, 50)
    return render(
        request,
        "audit.html",
        total=total,
        entries=[audit_json(e) for e in entries],
        page=page,
        pages=max(1, math.ceil(total / 50)),
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index)
    router.add_get("/static/console.css", stylesheet)
    router.add_get("/login", get_login)
    router.add_post("/login", post_login)
    router.add_post("/logout", post_logout)
    router.add_get("/fleet", get_fleet)
    router.add_get("/devices/{lfdi}", get_device)
    router.add_get("/programs", get_programs)
    router.add_post("/events", post_event)
    router.add_get("/events/{eid}", get_event)
    router.add_post("/events/{eid}", post_event_update)
    router.add_post("/events/{eid}/cancel", post_event_cancel)
    router.add_get("/capacity", get_capacity)
    router.add_get("/settlement/{eid}", get_settlement)
    router.add_get("/conformance", get_conformance)
    router.add_get("/conformance/{name}", get_campaign)
    router.add_get("/vtn", get_vtn)
    router.add_get("/audit", get_audit)
