"""Groups and programs: FunctionSetAssignments, DERProgram, DERControl, DefaultDERControl,
ActiveDERControlList, DERCurve, and the ResponseSets devices answer controls in."""

from __future__ import annotations

from aiohttp import web

from csip.domain.paging import Page
from csip.services.programs import ProgramService
from csip.services.subscriptions import SubscriptionService
from csip.web.paths import path_id
from csip.web.sep2_common import (
    PRINCIPAL,
    cached,
    created,
    device_id,
    guarded,
    page_of,
    read_body,
    xml,
)

PROGRAMS = web.AppKey("programs_service", ProgramService)
SUBSCRIPTIONS = web.AppKey("subscriptions_service", SubscriptionService)


def _programs(request: web.Request) -> ProgramService:
    return request.app[PROGRAMS]


def _page(request: web.Request) -> Page:
    return page_of(request)


def _int(request: web.Request, name: str) -> int:
    return path_id(request, name)


async def get_fsa_list(request: web.Request) -> web.Response:
    body = await _programs(request).fsa_list(request[PRINCIPAL], device_id(request), _page(request))
    return xml(body)


async def get_fsa(request: web.Request) -> web.Response:
    return xml(await _programs(request).fsa(request[PRINCIPAL], _int(request, "gid")))


async def get_program_list(request: web.Request) -> web.Response:
    programs, gid = _programs(request), _int(request, "gid")
    return xml(await programs.program_list(request[PRINCIPAL], gid, _page(request)))


async def get_program(request: web.Request) -> web.Response:
    return xml(await _programs(request).program(request[PRINCIPAL], _int(request, "pid")))


async def get_control_list(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.control_list(request[PRINCIPAL], pid, _page(request)))


async def get_active_list(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.control_list(request[PRINCIPAL], pid, _page(request), True))


async def get_control(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.control(request[PRINCIPAL], pid, _int(request, "cid")))


async def get_default_control(request: web.Request) -> web.Response:
    return xml(await _programs(request).default_control(request[PRINCIPAL], _int(request, "pid")))


async def get_curve_list(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.curve_list(request[PRINCIPAL], pid, _page(request)))


async def get_curve(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.curve(request[PRINCIPAL], pid, _int(request, "cid")))


async def get_response_sets(request: web.Request) -> web.Response:
    return xml(await _programs(request).response_set_list(request[PRINCIPAL], _page(request)))


async def get_responses(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.response_list(request[PRINCIPAL], pid, _page(request)))


async def get_response_set(request: web.Request) -> web.Response:
    return xml(await _programs(request).response_set(request[PRINCIPAL], _int(request, "pid")))


async def get_response(request: web.Request) -> web.Response:
    programs, pid = _programs(request), _int(request, "pid")
    return xml(await programs.response(request[PRINCIPAL], pid, _int(request, "rid")))


async def post_response(request: web.Request) -> web.Response:
    body = await read_body(request)
    href = await _programs(request).post_response(request[PRINCIPAL], _int(request, "pid"), body)
    return created(href)


async def get_subscriptions(request: web.Request) -> web.Response:
    subscriptions = request.app[SUBSCRIPTIONS]
    return xml(await subscriptions.page(request[PRINCIPAL], device_id(request), _page(request)))


async def post_subscription(request: web.Request) -> web.Response:
    body = await read_body(request)
    found = await request.app[SUBSCRIPTIONS].create(request[PRINCIPAL], device_id(request), body)
    return created(found.href)


async def get_subscription(request: web.Request) -> web.Response:
    subscriptions, sid = request.app[SUBSCRIPTIONS], _int(request, "sid")
    return xml(await subscriptions.get(request[PRINCIPAL], device_id(request), sid))


async def delete_subscription(request: web.Request) -> web.Response:
    subscriptions, sid = request.app[SUBSCRIPTIONS], _int(request, "sid")
    await subscriptions.delete(request[PRINCIPAL], device_id(request), sid)
    return web.Response(status=204)


def setup(
    app: web.Application, programs: ProgramService, subscriptions: SubscriptionService
) -> None:
    """Add this function set's routes to the 2030.5 app."""
    app[PROGRAMS] = programs
    app[SUBSCRIPTIONS] = subscriptions
    routes = app.router
    routes.add_get(r"/edev/{id:\d+}/fsa", cached(get_fsa_list))
    routes.add_get(r"/fsa/{gid:\d+}", cached(get_fsa))
    routes.add_get(r"/fsa/{gid:\d+}/derp", cached(get_program_list))
    routes.add_get(r"/derp/{pid:\d+}", cached(get_program))
    routes.add_get(r"/derp/{pid:\d+}/derc", cached(get_control_list))
    routes.add_get(r"/derp/{pid:\d+}/derc/{cid:\d+}", cached(get_control))
    routes.add_get(r"/derp/{pid:\d+}/actderc", cached(get_active_list))
    routes.add_get(r"/derp/{pid:\d+}/dderc", cached(get_default_control))
    routes.add_get(r"/derp/{pid:\d+}/dc", cached(get_curve_list))
    routes.add_get(r"/derp/{pid:\d+}/dc/{cid:\d+}", cached(get_curve))
    routes.add_get("/rsps", guarded(get_response_sets))
    routes.add_get(r"/rsps/{pid:\d+}", guarded(get_response_set))
    routes.add_get(r"/rsps/{pid:\d+}/rsp", guarded(get_responses))
    routes.add_get(r"/rsps/{pid:\d+}/rsp/{rid:\d+}", guarded(get_response))
    routes.add_post(r"/rsps/{pid:\d+}/rsp", guarded(post_response))
    routes.add_get(r"/edev/{id:\d+}/sub", guarded(get_subscriptions))
    routes.add_post(r"/edev/{id:\d+}/sub", guarded(post_subscription))
    routes.add_get(r"/edev/{id:\d+}/sub/{sid:\d+}", guarded(get_subscription))
    routes.add_delete(r"/edev/{id:\d+}/sub/{sid:\d+}", guarded(delete_subscription))
