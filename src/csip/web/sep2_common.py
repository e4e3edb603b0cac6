"""What every 2030.5 handler module shares: app keys, the caller, XML responses, bodies."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from aiohttp import web

from csip.domain.devices import Principal, PrincipalKind
from csip.domain.paging import Page, parse_page
from csip.errors import CsipError, Forbidden, UnsupportedMediaType
from csip.logsafe import safe
from csip.sep2.xml import CONTENT_TYPE, error_body
from csip.services.cache import READS, Entry
from csip.services.sep2 import Sep2Service
from csip.web import limits
from csip.web.fastlane import FastLane
from csip.web.identity import IdentityResolver
from csip.web.observe import explain, route_of
from csip.web.paths import path_id

log = logging.getLogger("csip.web.sep2_app")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICE = web.AppKey("sep2_service", Sep2Service)
IDENTITY = web.AppKey("sep2_identity", IdentityResolver)
LANE = web.AppKey("sep2_fast_lane", FastLane)
PRINCIPAL = web.RequestKey("principal", Principal)
ACCEPTED_TYPES = frozenset({CONTENT_TYPE, "application/xml", "text/xml"})


_XML_HEADERS = {"Content-Type": CONTENT_TYPE}


def xml(body: bytes, status: int = 200) -> web.Response:
    """An application/sep+xml response; the header is given ready-made, since aiohttp's
    content_type= path re-parses it on every poll."""
    return web.Response(body=body, status=status, headers=_XML_HEADERS)


def created(href: str) -> web.Response:
    """201 Created with the new resource's href (CLARIFICATIONS "POST answers")."""
    response = web.Response(status=201)
    response.headers["Location"] = href
    return response


def put_answer(created_href: str | None) -> web.Response:
    """A PUT that created its resource answers 201 with Location, one that replaced 204
    (RFC 9110 §9.3.4, which 2030.5's HTTP use follows)."""
    return created(created_href) if created_href is not None else web.Response(status=204)


def error_response(status: int, reason_code: int, *, close: bool = False) -> web.Response:
    response = xml(error_body(reason_code), status)
    if close:
        response.force_close()
    return response


async def read_body(request: web.Request) -> bytes:
    if request.content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"send {CONTENT_TYPE}, not {request.content_type}")
    return await limits.read_body(request, request.app[SERVICE].settings.max_body_bytes)


def svc(request: web.Request) -> Sep2Service:
    return request.app[SERVICE]


#: (raw query string, default limit, max limit) -> its Page.
_PAGES: dict[tuple[str, int, int], Page] = {}
#: Distinct query strings remembered; past it the memo starts again (a client inventing
#: query strings costs a parse each, never memory).
MAX_PAGES = 4096


def page_of(request: web.Request, default_limit: int = 1) -> Page:
    """The s/a/l of a list request, parsed once per distinct query string (an aggregator's
    walk repeats the same few `?s=K&l=255`): a dict lookup instead of parsing the query."""
    settings = request.app[SERVICE].settings
    raw = request.raw_path
    mark = raw.find("?")
    query = raw[mark + 1 :] if mark >= 0 else ""
    key = (query, default_limit, settings.max_list_limit)
    page = _PAGES.get(key)
    if page is None:
        # a malformed query raises BadRequest here and is not remembered
        values = dict(request.query) if query else {}
        page = parse_page(values, default_limit, key[2])
        if len(_PAGES) >= MAX_PAGES:
            _PAGES.clear()
        _PAGES[key] = page
    return page


def device_id(request: web.Request) -> int:
    return path_id(request, "id")


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


def guarded(handler: Handler) -> Handler:
    """Identity first, then the handler; every failure becomes a 2030.5 Error body.

    A wrapper per route rather than an aiohttp middleware: a middleware chain adds two
    coroutine layers to every poll (ours and aiohttp's current-app fixer), measurably on
    the hot path.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            principal = request[PRINCIPAL] = await _principal(request)
            lane = request.app.get(LANE)
            if lane is not None:  # csip_sep2_clients_seen
                lane.seen[principal.lfdi] = time.monotonic()
            return await handler(request)
        except CsipError as exc:
            path, detail = safe(request.path), safe(exc.detail)
            if exc.status >= 500:
                log.error("%s %s failed: %s", request.method, path, detail)
            else:
                explain(request, log, "%s %s -> %s: %s", request.method, path, exc.status, detail)
            close = exc.status == 403 or exc.status in limits.CLOSING
            response = error_response(exc.status, exc.reason_code, close=close)
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
        except Exception as exc:
            if limits.client_gone(exc):
                explain(
                    request,
                    log,
                    "%s %s: client gone: %s",
                    request.method,
                    safe(request.path),
                    safe(exc),
                )
                return error_response(400, 0, close=True)
            log.exception("%s %s failed", request.method, safe(request.path))
            return error_response(500, 0)

    return wrapped


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """Behind every other route: 405 with Allow when the path exists, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/{tail}":
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


unmatched = guarded(_unmatched)


def cached(handler: Handler) -> Handler:
    """`guarded`, and a 200 answer taught to the fast lane (web/fastlane.py).

    For routes whose answer is a function of the caller and of render-cache entries only:
    the entries the handler reads are collected (services.cache.READS), and the fast lane
    serves the same bytes while each of them is still the one cached. A route that reads the
    database or the clock outside the cache must stay `guarded`.
    """
    inner = guarded(handler)

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        reads: list[tuple[Hashable, Entry]] = []
        token = READS.set(reads)
        try:
            response = await inner(request)
        finally:
            READS.reset(token)
        if (
            reads
            and response.status == 200
            and type(response) is web.Response
            and len(response.headers) == 1
        ):
            body = response.body
            lane = request.app.get(LANE)
            if lane is not None and type(body) is bytes:
                content_type = response.headers.get("Content-Type")
                if content_type is not None:
                    lane.learn(
                        request[PRINCIPAL],
                        request.raw_path,
                        reads,
                        body,
                        content_type,
                        route_of(request),
                    )
        return response

    return wrapped
