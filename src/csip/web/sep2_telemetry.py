"""Telemetry: MirrorUsagePointList, MirrorUsagePoint, MirrorMeterReading(s), post rates; and
the metering read side under /upt (UsagePoint, MeterReading, ReadingType, ReadingSet, Reading)."""

from __future__ import annotations

from aiohttp import web

from csip.services.metering import MeteringService
from csip.services.telemetry import TelemetryService
from csip.web.paths import path_id
from csip.web.sep2_common import PRINCIPAL, created, guarded, page_of, read_body, xml

TELEMETRY = web.AppKey("telemetry_service", TelemetryService)
METERING = web.AppKey("metering_service", MeteringService)


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


def _ids(request: web.Request, *names: str) -> list[int]:
    return [path_id(request, n) for n in names]


async def get_upt_list(request: web.Request) -> web.Response:
    return xml(await request.app[METERING].usage_point_list(request[PRINCIPAL], page_of(request)))


async def get_upt(request: web.Request) -> web.Response:
    (upt,) = _ids(request, "upt")
    return xml(await request.app[METERING].usage_point(request[PRINCIPAL], upt))


async def get_mr_list(request: web.Request) -> web.Response:
    (upt,) = _ids(request, "upt")
    page = page_of(request)
    return xml(await request.app[METERING].meter_reading_list(request[PRINCIPAL], upt, page))


async def get_mr(request: web.Request) -> web.Response:
    upt, mr = _ids(request, "upt", "mr")
    return xml(await request.app[METERING].meter_reading(request[PRINCIPAL], upt, mr))


async def get_rt(request: web.Request) -> web.Response:
    upt, mr = _ids(request, "upt", "mr")
    return xml(await request.app[METERING].reading_type(request[PRINCIPAL], upt, mr))


async def get_rs_list(request: web.Request) -> web.Response:
    upt, mr = _ids(request, "upt", "mr")
    page = page_of(request)
    return xml(await request.app[METERING].reading_set_list(request[PRINCIPAL], upt, mr, page))


async def get_rs(request: web.Request) -> web.Response:
    upt, mr, rs = _ids(request, "upt", "mr", "rs")
    return xml(await request.app[METERING].reading_set(request[PRINCIPAL], upt, mr, rs))


async def get_reading_list(request: web.Request) -> web.Response:
    upt, mr, rs = _ids(request, "upt", "mr", "rs")
    page = page_of(request)
    metering = request.app[METERING]
    return xml(await metering.reading_list(request[PRINCIPAL], upt, mr, rs, page))


async def get_reading(request: web.Request) -> web.Response:
    upt, mr, rs, r = _ids(request, "upt", "mr", "rs", "r")
    return xml(await request.app[METERING].reading(request[PRINCIPAL], upt, mr, rs, r))


def setup(app: web.Application, telemetry: TelemetryService) -> None:
    """Add this function set's routes (and the metering read side over it) to the 2030.5 app."""
    app[TELEMETRY] = telemetry
    mup = r"/mup/{mup:\d{1,9}}"
    routes = app.router
    routes.add_get("/mup", guarded(get_mup_list))
    routes.add_post("/mup", guarded(post_mup))
    routes.add_get(mup, guarded(get_mup))
    routes.add_post(mup, guarded(post_readings))
    routes.add_delete(mup, guarded(delete_mup))
    routes.add_get(mup + r"/mr/{mr:\d{1,9}}", guarded(get_meter_reading))
    app[METERING] = MeteringService(telemetry)
    upt = r"/upt/{upt:\d{1,9}}"
    mr = upt + r"/mr/{mr:\d{1,9}}"
    rs = mr + r"/rs/{rs:\d{1,9}}"
    routes.add_get("/upt", guarded(get_upt_list))
    routes.add_get(upt, guarded(get_upt))
    routes.add_get(upt + "/mr", guarded(get_mr_list))
    routes.add_get(mr, guarded(get_mr))
    routes.add_get(mr + "/rt", guarded(get_rt))
    routes.add_get(mr + "/rs", guarded(get_rs_list))
    routes.add_get(rs, guarded(get_rs))
    routes.add_get(rs + "/r", guarded(get_reading_list))
    routes.add_get(rs + r"/r/{r:\d{1,12}}", guarded(get_reading))
