"""The IEEE 2030.5 face: routes, one middleware, handlers of a few lines each."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from csip.domain.devices import Principal, PrincipalKind
from csip.domain.paging import parse_page
from csip.errors import CsipError, Forbidden
from csip.services.sep2 import DOCUMENTS, Sep2Service
from csip.web import sep2_der, sep2_programs, sep2_telemetry
from csip.web.identity import IdentityResolver
from csip.web.sep2_common import (
    IDENTITY,
    PRINCIPAL,
    SERVICE,
    created,
    device_id,
    error_response,
    read_body,
    svc,
    xml,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _principal(request: web.Request) -> Principal:
    """Resolve the caller, enforcing the 2030.5 leaf rules and the utility's deny-list.

    A certificate admitted before (and not changed since: a deny-listing or attachment drops
    it) takes the fast path, a dict lookup; everything else is checked in full.
    """
    identity = request.app[IDENTITY].resolve(request)
    if identity is None:
        raise Forbidden("a client certificate is required")
    if identity.problems:
        raise Forbidden("client certificate rejected: " + "; ".join(identity.problems))
    service = request.app[SERVICE]
    principal = service.ready_principal(identity.lfdi)
    if principal is not None:
        return principal
    principal = await service.principal(identity.lfdi, identity.sfdi)
    if principal.disabled:
        raise Forbidden("this certificate has been disabled by the utility")
    if principal.kind is PrincipalKind.DEVICE and not identity.has_hardware_module_name:
        raise Forbidden("a device certificate must carry a HardwareModuleName")
    service.admit(principal)
    return principal


@web.middleware
async def sep2_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Identity first, then the handler; every failure becomes a 2030.5 Error body."""
    try:
        request[PRINCIPAL] = await _principal(request)
        return await handler(request)
    except CsipError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.detail)
        else:
            log.info("%s %s -> %s: %s", request.method, request.path, exc.status, exc.detail)
        response = error_response(exc.status, exc.reason_code, close=exc.status == 403)
        location = getattr(exc, "location", None)
        if location:
            response.headers["Location"] = location
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, 0)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, 0)


async def get_dcap(request: web.Request) -> web.Response:
    return xml(await svc(request).device_capability(request[PRINCIPAL]))


async def get_time(request: web.Request) -> web.Response:
    return xml(await svc(request).time())


async def get_edev_list(request: web.Request) -> web.Response:
    settings = svc(request).settings
    page = parse_page(dict(request.query), 1, settings.max_list_limit)
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
    await svc(request).put_document(request[PRINCIPAL], device_id(request), part, body)
    return web.Response(status=204)


def create_app(service: Sep2Service, identity: IdentityResolver) -> web.Application:
    app = web.Application(
        middlewares=[sep2_middleware], client_max_size=service.settings.max_body_bytes
    )
    app[SERVICE] = service
    app[IDENTITY] = identity
    documents = "|".join(DOCUMENTS)
    routes = app.router
    routes.add_get("/dcap", get_dcap)
    routes.add_get("/tm", get_time)
    routes.add_get("/edev", get_edev_list)
    routes.add_post("/edev", post_edev)
    routes.add_get(r"/edev/{id:\d+}", get_edev)
    routes.add_put(r"/edev/{id:\d+}", put_edev)
    routes.add_delete(r"/edev/{id:\d+}", delete_edev)
    routes.add_get(r"/edev/{id:\d+}/rg", get_registration)
    routes.add_get(rf"/edev/{{id:\d+}}/{{part:{documents}}}", get_edev)
    routes.add_put(rf"/edev/{{id:\d+}}/{{part:{documents}}}", put_document)
    # function sets beyond the foundation each add their own routes and services
    for function_set in (sep2_der, sep2_telemetry, sep2_programs):
        function_set.setup(app, service)
    return app


def create_redirect_app(https_port: int) -> web.Application:
    """CORE-002: plain HTTP answers only with a redirect to the same path over https."""

    async def redirect(request: web.Request) -> web.Response:
        host = request.url.host or "localhost"
        target = request.url.with_scheme("https").with_host(host).with_port(https_port)
        raise web.HTTPMovedPermanently(location=str(target))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app
