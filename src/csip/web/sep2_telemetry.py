"""Telemetry: MirrorUsagePointList, MirrorUsagePoint, MirrorMeterReading(s), post rates."""

from __future__ import annotations

from aiohttp import web

from csip.services.sep2 import Sep2Service
from csip.services.telemetry import TelemetryService
from csip.web.paths import path_id
from csip.web.sep2_common import PRINCIPAL, created, guarded, page_of, read_body, xml

TELEMETRY = web.AppKey("telemetry_service", TelemetryService)


def _svc(request: web.Request) -> TelemetryService:
    return request.app[TELEMETRY]


def _mup_id(request: web.Request) -> int:
    return path_id(request, "mup")


async def get_mup_list(request: web.Request) -> web.Response:
    svc = _svc(request)
    page = page_of(request)
    return xml(await svc.mup_list(request[PRINCIPAL], page))


async def post_mup(request: web.Request) -> web.Response:
    """201 + Location on create; a repeat POST of the same mRID updates it: 204, same href."""
    result = await _svc(request).post_mup(request[PRINCIPAL], await read_body(request))
    if result.created:
        return created(result.mup.href)
    response = web.Response(status=204)
    response.headers["Location"] = result.mup.href
    return response


async def get_mup(request: web.Request) -> web.Response:
    return xml(await _svc(request).mup(request[PRINCIPAL], _mup_id(request)))


async def post_readings(request: web.Request) -> web.Response:
    body = await read_body(request)
    _, href = await _svc(request).post_readings(request[PRINCIPAL], _mup_id(request), body)
    return created(href)


async def delete_mup(request: web.Request) -> web.Response:
    await _svc(request).delete_mup(request[PRINCIPAL], _mup_id(request))
    return web.Response(status=204)


async def get_meter_reading(request: web.Request) -> web.Response:
    svc = _svc(request)
    mmr = path_id(request, "mr")
    return xml(await svc.meter_reading(request[PRINCIPAL], _mup_id(request), mmr))


def setup(app: web.Application, service: Sep2Service) -> None:
    """Add this function set's routes (and services) to the 2030.5 app."""
    telemetry = TelemetryService(service)
    app[TELEMETRY] = telemetry
    service.mup_count = telemetry.count
    mup = r"/mup/{mup:\d{1,9}}"
    routes = app.router
    routes.add_get("/mup", guarded(get_mup_list))
    routes.add_post("/mup", guarded(post_mup))
    routes.add_get(mup, guarded(get_mup))
    routes.add_post(mup, guarded(post_readings))
    routes.add_delete(mup, guarded(delete_mup))
    routes.add_get(mup + r"/mr/{mr:\d{1,9}}", guarded(get_meter_reading))
