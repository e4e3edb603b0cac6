"""The IEEE 2030.5 face: routes, one middleware, handlers of a few lines each."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from csip.metrics import Metrics
from csip.services.der_device import DerDeviceService
from csip.services.messaging import MessagingService
from csip.services.programs import ProgramService
from csip.services.sep2 import DOCUMENTS, Sep2Service
from csip.services.subscriptions import SubscriptionService
from csip.services.telemetry import TelemetryService
from csip.web import limits, sep2_der, sep2_messaging, sep2_programs, sep2_telemetry
from csip.web.fastlane import FastLane
from csip.web.identity import IdentityResolver
from csip.web.observe import METRICS
from csip.web.sep2_common import (
    IDENTITY,
    LANE,
    PRINCIPAL,
    SERVICE,
    cached,
    created,
    device_id,
    guarded,
    page_of,
    put_answer,
    read_body,
    svc,
    unmatched,
    xml,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def get_dcap(request: web.Request) -> web.Response:
    return xml(await svc(request).device_capability(request[PRINCIPAL]))


async def get_time(request: web.Request) -> web.Response:
    return xml(await svc(request).time())


async def get_edev_list(request: web.Request) -> web.Response:
    page = page_of(request)
    return xml(await svc(request).end_device_list(request[PRINCIPAL], page))


async def post_edev(request: web.Request) -> web.Response:
    device = await svc(request).register(request[PRINCIPAL], await read_body(request))
    return created(device.href)


async def get_edev(request: web.Request) -> web.Response:
    part = request.match_info.get("part", "")
    return xml(await svc(request).device_resource(request[PRINCIPAL], device_id(request), part))


async def get_registration(request: web.Request) -> web.Response:
    return xml(await svc(request).device_resource(request[PRINCIPAL], device_id(request), "rg"))


async def put_edev(request: web.Request) -> web.Response:
    body = await read_body(request)
    await svc(request).update_end_device(request[PRINCIPAL], device_id(request), body)
    return web.Response(status=204)


async def delete_edev(request: web.Request) -> web.Response:
    await svc(request).delete_end_device(request[PRINCIPAL], device_id(request))
    return web.Response(status=204)


async def put_document(request: web.Request) -> web.Response:
    body = await read_body(request)
    part = request.match_info["part"]
    href = await svc(request).put_document(request[PRINCIPAL], device_id(request), part, body)
    return put_answer(href)


def create_app(
    service: Sep2Service,
    identity: IdentityResolver,
    programs: ProgramService,
    subscriptions: SubscriptionService,
    der_device: DerDeviceService,
    telemetry: TelemetryService,
    messaging: MessagingService,
    metrics: Metrics | None = None,
) -> web.Application:
    """The 2030.5 face over services built elsewhere (csip.app.build)."""
    app = web.Application(client_max_size=service.settings.max_body_bytes)
    app[SERVICE] = service
    if metrics is not None:
        app[METRICS] = metrics
    app[limits.FACE] = "sep2"
    app[IDENTITY] = identity
    # the fast lane: unchanged polls answered before aiohttp sees them (web/fastlane.py)
    lane = app[LANE] = FastLane(service, identity, metrics)
    app[limits.PROTOCOL] = lane.protocol
    documents = "|".join(DOCUMENTS)
    routes = app.router
    routes.add_get("/dcap", cached(get_dcap))
    routes.add_get("/tm", guarded(get_time))
    routes.add_get("/edev", cached(get_edev_list))
    routes.add_post("/edev", guarded(post_edev))
    routes.add_get(r"/edev/{id:\d+}", cached(get_edev))
    routes.add_put(r"/edev/{id:\d+}", guarded(put_edev))
    routes.add_delete(r"/edev/{id:\d+}", guarded(delete_edev))
    # function sets beyond the foundation each add their own routes; aiohttp tries the
    # /edev/{id}/... patterns in this order, so the most polled come first
    sep2_programs.setup(app, programs, subscriptions)
    sep2_der.setup(app, der_device)
    sep2_telemetry.setup(app, telemetry)
    sep2_messaging.setup(app, messaging)
    routes.add_get(r"/edev/{id:\d+}/rg", cached(get_registration))
    routes.add_get(rf"/edev/{{id:\d+}}/{{part:{documents}}}", cached(get_edev))
    routes.add_put(rf"/edev/{{id:\d+}}/{{part:{documents}}}", guarded(put_document))
    routes.add_route("*", "/{tail:.*}", unmatched)  # last: 404 / 405 as 2030.5 Errors
    return app


def create_redirect_app(https_port: int) -> web.Application:
    """CORE-002: plain HTTP answers only with a redirect to the same path over https."""

    async def redirect(request: web.Request) -> web.Response:
        host = request.url.host or "localhost"
        target = request.url.with_scheme("https").with_host(host).with_port(https_port)
        raise web.HTTPMovedPermanently(location=str(target))

    app = web.Application()
    app[limits.FACE] = "redirect"
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app
