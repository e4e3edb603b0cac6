"""What every 2030.5 handler module shares: app keys, the caller, XML responses, bodies."""

from __future__ import annotations

from aiohttp import web

from csip.domain.devices import Principal
from csip.errors import UnsupportedMediaType
from csip.sep2.xml import CONTENT_TYPE, error_body
from csip.services.sep2 import Sep2Service
from csip.web.identity import IdentityResolver

SERVICE = web.AppKey("sep2_service", Sep2Service)
IDENTITY = web.AppKey("sep2_identity", IdentityResolver)
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


def error_response(status: int, reason_code: int, *, close: bool = False) -> web.Response:
    response = xml(error_body(reason_code), status)
    if close:
        response.force_close()
    return response


async def read_body(request: web.Request) -> bytes:
    if request.content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"send {CONTENT_TYPE}, not {request.content_type}")
    return await request.read()


def svc(request: web.Request) -> Sep2Service:
    return request.app[SERVICE]


def device_id(request: web.Request) -> int:
    return int(request.match_info["id"])
