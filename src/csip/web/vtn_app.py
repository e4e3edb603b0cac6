"""The OpenADR 3.1.0 VTN face: JSON over HTTPS under the base path, OAuth2 bearer tokens.

Handlers are a few lines each: parse the path and query, authenticate, call VtnService,
answer its bytes. Every 4xx/5xx is a Problem object (type, title, status, detail) with
``application/json`` as the YAML declares; nothing internal leaks.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from csip.config import Settings
from csip.errors import BadRequest, CsipError, InvalidValues
from csip.logsafe import safe
from csip.openadr.rules import KINDS, Principal
from csip.services.vtn import MAX_LIMIT, ListQuery, VtnService
from csip.services.vtn_auth import GrantError, TokenError, VtnAuth, client_json
from csip.web import limits

log = logging.getLogger(__name__)

VTN = web.AppKey("vtn_service", VtnService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}
#: The path segment of each object kind.
COLLECTIONS = {
    "programs": "PROGRAM",
    "events": "EVENT",
    "reports": "REPORT",
    "subscriptions": "SUBSCRIPTION",
    "vens": "VEN",
    "resources": "RESOURCE",
}


def problem(status: int, detail: str, **extra: Any) -> web.Response:
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type=_JSON, charset=None
    )


def _ok(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TokenError as exc:
        response = problem(401, exc.detail, error=exc.oauth_error, error_description=exc.detail)
        response.headers["WWW-Authenticate"] = 'Basic realm="csip-vtn"'
        return response
    except GrantError as exc:
        return problem(400, exc.detail, error=exc.oauth_error, error_description=exc.detail)
    except CsipError as exc:
        response = problem(exc.status, exc.detail)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="csip-vtn"'
        if exc.status in limits.CLOSING:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if limits.client_gone(exc):
            log.info("VTN %s %s: client gone: %s", request.method, safe(request.path), safe(exc))
            response = problem(400, "the request was cut short")
            response.force_close()
            return response
        log.exception("VTN %s %s failed", request.method, safe(request.path))
        return problem(500, "internal error; see the server log")


def _svc(request: web.Request) -> VtnService:
    return request.app[VTN]


async def _principal(request: web.Request) -> Principal:
    return await _svc(request).auth.authenticate(request.headers.get("Authorization"))


async def _body(request: web.Request) -> bytes:
    raw = await limits.read_body(request, _svc(request).settings.vtn_max_body_bytes)
    if not raw:
        raise BadRequest("a JSON body is required")
    return raw


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a whole number") from exc
    if not 0 <= value < 2**31:
        raise BadRequest(f"{name} must be 0 to 2147483647")
    return value


_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def _text(request: web.Request, name: str, object_id: bool = False) -> str | None:
    """A string query parameter, held to the YAML's rule for it (objectID or a 1-128 name)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if object_id and not _OBJECT_ID.match(raw):
        raise BadRequest(f"{name} must be an objectID (1-128 of A-Z a-z 0-9 _ -)")
    if not 1 <= len(raw) <= 128:
        raise BadRequest(f"{name} must be 1 to 128 characters")
    return raw


def _bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return raw.lower() == "true"


def list_query(request: web.Request) -> ListQuery:
    q = request.query
    objects = tuple(q.getall("objects", ()))
    if any(o not in KINDS for o in objects):
        raise BadRequest(f"objects must be among {', '.join(KINDS)}")
    targets = tuple(q.getall("targets", ()))
    if any(not 1 <= len(t) <= 128 for t in targets):
        raise BadRequest("each target must be 1 to 128 characters")
    return ListQuery(
        skip=_int(request, "skip", 0),
        limit=_int(request, "limit", MAX_LIMIT),
        targets=targets,
        program_id=_text(request, "programID", object_id=True),
        event_id=_text(request, "eventID", object_id=True),
        client_name=_text(request, "clientName"),
        ven_name=_text(request, "venName"),
        resource_name=_text(request, "resourceName"),
        ven_id=_text(request, "venID", object_id=True),
        objects=objects,
        active=_bool(request, "active"),
    )


# ---- object handlers ----------------------------------------------------------------
def _kind(request: web.Request) -> str:
    return COLLECTIONS[request.match_info["collection"]]


async def search(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc, kind, raw = _svc(request), _kind(request), request.query_string
    body = svc.cached_list(principal, kind, raw)
    if body is None:
        body = await svc.list_objects(principal, kind, list_query(request), raw)
    return _ok(body)


async def create(request: web.Request) -> web.Response:
    principal = await _principal(request)
    raw = await _body(request)
    body = await _svc(request).create(principal, _kind(request), raw)
    response = _ok(body, 201)
    object_id = json.loads(body)["id"]
    response.headers["Location"] = f"{request.path.rstrip('/')}/{object_id}"
    return response


async def read(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    return _ok(await svc.get_object(principal, _kind(request), request.match_info["id"]))


async def update(request: web.Request) -> web.Response:
    principal = await _principal(request)
    raw = await _body(request)
    svc = _svc(request)
    return _ok(await svc.update(principal, _kind(request), request.match_info["id"], raw))


async def delete(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    return _ok(await svc.delete(principal, _kind(request), request.match_info["id"]))


# ---- auth ------------------------------------------------------------------------------
def _base_url(request: web.Request) -> str:
    svc = _svc(request)
    public = svc.settings.vtn_public_url.rstrip("/")
    if public:
        return public
    return f"{request.scheme}://{request.host}{svc.settings.vtn_base_path}"


async def auth_server(request: web.Request) -> web.Response:
    return _ok(json.dumps({"tokenURL": _base_url(request) + "/auth/token"}).encode())


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError("the Basic credentials are not base64") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise TokenError("the Basic credentials must be client_id:client_secret")
    return unquote(client_id), unquote(secret)


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def auth_token(request: web.Request) -> web.Response:
    """RFC 6749 4.4: credentials by HTTP Basic or in the form body (clients do both)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise GrantError("send application/x-www-form-urlencoded")
    form = await limits.bounded(request, _svc(request).settings.vtn_max_body_bytes, request.post)
    basic = _basic(request.headers.get("Authorization", ""))
    if basic is not None:
        client_id: str | None = basic[0]
        secret: str | None = basic[1]
    else:
        client_id, secret = _field(form, "client_id"), _field(form, "client_secret")
    result = await _svc(request).auth.issue_token(
        client_id, secret, _field(form, "grant_type"), _field(form, "scope")
    )
    response = _ok(json.dumps(result).encode())
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- notifiers ---------------------------------------------------------------------------
async def notifiers(request: web.Request) -> web.Response:
    await _principal(request)
    return _ok(_svc(request).notifiers())


def _topics(family: str, id_name: str | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        principal = await _principal(request)
        object_id = request.match_info[id_name] if id_name else None
        return _ok(await _svc(request).topics(principal, family, object_id))

    handler.__name__ = f"topics_{family.replace('/', '_')}"
    return handler


TOPIC_ROUTES: tuple[tuple[str, str, str | None], ...] = (
    ("/notifiers/mqtt/topics/programs", "programs", None),
    ("/notifiers/mqtt/topics/programs/{programID}", "program", "programID"),
    ("/notifiers/mqtt/topics/programs/{programID}/events", "program/events", "programID"),
    ("/notifiers/mqtt/topics/events", "events", None),
    ("/notifiers/mqtt/topics/reports", "reports", None),
    ("/notifiers/mqtt/topics/subscriptions", "subscriptions", None),
    ("/notifiers/mqtt/topics/vens", "vens", None),
    ("/notifiers/mqtt/topics/vens/{venID}", "ven", "venID"),
    ("/notifiers/mqtt/topics/vens/{venID}/events", "ven/events", "venID"),
    ("/notifiers/mqtt/topics/vens/{venID}/programs", "ven/programs", "venID"),
    ("/notifiers/mqtt/topics/vens/{venID}/resources", "ven/resources", "venID"),
    ("/notifiers/mqtt/topics/resources", "resources", None),
)


def vtn_tls_context(settings: Settings) -> ssl.SSLContext:
    """Server-authenticated TLS (VENs and BLs use OAuth2, not client certificates)."""
    _ca, chain, key = settings.tls_files()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(chain), str(key))
    return context


def create_app(service: VtnService) -> web.Application:
    settings = service.settings
    # Long query strings (many targets=...) must reach the handlers, which answer a Problem;
    # past aiohttp's default 8 KiB request line its parser would answer in plain text.
    app = web.Application(
        middlewares=[problems],
        client_max_size=settings.vtn_max_body_bytes,
        handler_args={"max_line_size": 262_144, "max_field_size": 16_384},
    )
    app[VTN] = service
    app[limits.FACE] = "vtn"
    base = settings.vtn_base_path
    kinds = "{collection:" + "|".join(COLLECTIONS) + "}"
    router = app.router
    router.add_get(f"{base}/{kinds}", search)
    router.add_post(f"{base}/{kinds}", create)
    router.add_get(f"{base}/{kinds}/{{id}}", read)
    router.add_put(f"{base}/{kinds}/{{id}}", update)
    router.add_delete(f"{base}/{kinds}/{{id}}", delete)
    router.add_get(f"{base}/auth/server", auth_server)
    router.add_post(f"{base}/auth/token", auth_token)
    router.add_get(f"{base}/notifiers", notifiers)
    for path, family, id_name in TOPIC_ROUTES:
        router.add_get(base + path, _topics(family, id_name))
    return app


# ---- admin API: VTN clients (routes listed in web/admin_app.ROUTES) ------------------------
VTN_AUTH = web.AppKey("vtn_auth", VtnAuth)


class VtnClientIn(BaseModel):
    """Create an OAuth2 client of the VTN; the secret is shown once, in the answer."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    role: str = Field(pattern="^(bl|ven)$")
    scopes: list[str] | None = Field(None, description="default: the role's usual scopes")


async def admin_list_vtn_clients(request: web.Request) -> web.Response:
    clients = await request.app[VTN_AUTH].clients()
    return web.json_response([client_json(c) for c in clients])


async def admin_create_vtn_client(request: web.Request) -> web.Response:
    try:
        raw = await limits.read_body(request, limits.ADMIN_MAX_BODY)
        body = VtnClientIn.model_validate_json(raw or b"{}")
    except ValueError as exc:
        raise InvalidValues(str(exc).splitlines()[0]) from exc
    created = await request.app[VTN_AUTH].create_client(body.name, body.role, body.scopes)
    return web.json_response(
        {**client_json(created.client), "client_secret": created.secret}, status=201
    )


async def admin_delete_vtn_client(request: web.Request) -> web.Response:
    await request.app[VTN_AUTH].remove_client(request.match_info["name"])
    return web.Response(status=204)
