"""DER resources a device posts (DERList, DER, DERCapability, DERSettings, DERStatus,
DERAvailability, AssociatedDERProgramList, CurrentDERProgram, ConnectionPoint) and LogEvents."""

from __future__ import annotations

from aiohttp import web

from csip.domain.der_device import DER_DOCUMENTS
from csip.services.der_device import DerDeviceService
from csip.web.paths import path_id
from csip.web.sep2_common import (
    PRINCIPAL,
    cached,
    created,
    device_id,
    guarded,
    page_of,
    put_answer,
    read_body,
    xml,
)
from csip.web.sep2_programs import PROGRAMS

DER_SERVICE = web.AppKey("der_device_service", DerDeviceService)


def _der(request: web.Request) -> DerDeviceService:
    return request.app[DER_SERVICE]


def _der_id(request: web.Request) -> int:
    return path_id(request, "der")


async def get_der_list(request: web.Request) -> web.Response:
    page = page_of(request)
    return xml(await _der(request).der_list(request[PRINCIPAL], device_id(request), page))


async def get_der(request: web.Request) -> web.Response:
    body = await _der(request).der(request[PRINCIPAL], device_id(request), _der_id(request))
    return xml(body)


async def get_der_programs(request: web.Request) -> web.Response:
    """AssociatedDERProgramList: the programs of every group the device belongs to."""
    _der(request).check_der(_der_id(request))
    page = page_of(request)
    programs = request.app[PROGRAMS]
    return xml(await programs.associated_programs(request[PRINCIPAL], device_id(request), page))


async def get_der_document(request: web.Request) -> web.Response:
    body = await _der(request).der_document(
        request[PRINCIPAL], device_id(request), _der_id(request), request.match_info["part"]
    )
    return xml(body)


async def put_der_document(request: web.Request) -> web.Response:
    body = await read_body(request)
    href = await _der(request).put_der_document(
        request[PRINCIPAL], device_id(request), _der_id(request), request.match_info["part"], body
    )
    return put_answer(href)


async def get_connection_point(request: web.Request) -> web.Response:
    return xml(await _der(request).connection_point(request[PRINCIPAL], device_id(request)))


async def put_connection_point(request: web.Request) -> web.Response:
    body = await read_body(request)
    href = await _der(request).put_connection_point(request[PRINCIPAL], device_id(request), body)
    return put_answer(href)


async def get_log_events(request: web.Request) -> web.Response:
    page = page_of(request)
    return xml(await _der(request).log_events(request[PRINCIPAL], device_id(request), page))


async def post_log_event(request: web.Request) -> web.Response:
    body = await read_body(request)
    event = await _der(request).post_log_event(request[PRINCIPAL], device_id(request), body)
    return created(event.href())


async def get_log_event(request: web.Request) -> web.Response:
    event_id = path_id(request, "n")
    return xml(await _der(request).log_event(request[PRINCIPAL], device_id(request), event_id))


def setup(app: web.Application, der_device: DerDeviceService) -> None:
    """Add this function set's routes to the 2030.5 app."""
    app[DER_SERVICE] = der_device
    documents = "|".join(DER_DOCUMENTS)
    edev = r"/edev/{id:\d+}"
    der = edev + r"/der/{der:\d{1,9}}"
    routes = app.router
    routes.add_get(edev + "/der", cached(get_der_list))
    routes.add_get(der, cached(get_der))
    routes.add_get(der + "/derp", cached(get_der_programs))
    routes.add_get(der + f"/{{part:{documents}}}", cached(get_der_document))
    routes.add_put(der + f"/{{part:{documents}}}", guarded(put_der_document))
    routes.add_get(edev + "/cp", cached(get_connection_point))
    routes.add_put(edev + "/cp", guarded(put_connection_point))
    routes.add_get(edev + "/lel", guarded(get_log_events))
    routes.add_post(edev + "/lel", guarded(post_log_event))
    routes.add_get(edev + r"/lel/{n:\d{1,9}}", guarded(get_log_event))
