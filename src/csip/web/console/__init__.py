"""The operator console at /console on the admin listener (issue 13): server-rendered pages,
routing only; services/console.py and services/operators.py do the work.

Access, in one middleware:

* a session cookie (HttpOnly, SameSite=Strict, Secure when the request came over TLS) names
  a session in the database; without one, a page redirects to the login form;
* every POST carries the session's CSRF token in a hidden field (the login form: a
  double-submit cookie, as there is no session yet); a missing or wrong token is 403;
* a viewer's POST is 403 before any handler runs;
* answers carry a Content-Security-Policy that allows only this origin's stylesheet (no
  script at all: the console has none) and forbids framing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from csip.domain.operators import Operator, Session
from csip.errors import CsipError
from csip.logsafe import safe
from csip.services.console import ConsoleService
from csip.services.operators import OperatorService

log = logging.getLogger(__name__)

CONSOLE = web.AppKey("console", ConsoleService)
OPERATORS = web.AppKey("operators", OperatorService)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
OPERATOR: web.RequestKey[Operator] = web.RequestKey("console_operator", Operator)
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)
FORM: web.RequestKey[MultiDictProxy[Any]] = web.RequestKey("console_form", MultiDictProxy)
SESSION_COOKIE = "csip_console"
LOGIN_COOKIE = "csip_login"
PREFIX = "/console"
#: Paths served without a session (the login form and the stylesheet).
PUBLIC = frozenset({f"{PREFIX}/login", f"{PREFIX}/static/console.css"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("csip.web.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from csip.web.console import filters

    env.filters.update(filters.FILTERS)
    return env


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def render(
    request: web.Request, template: str, http_status: int = 200, **context: Any
) -> web.Response:
    env = request.app[TEMPLATES]
    operator = request.get(OPERATOR)
    session = request.get(SESSION)
    body = env.get_template(template).render(
        operator=operator,
        csrf=session.csrf if session is not None else "",
        path=request.path,
        now=request.app[CONSOLE].now(),
        **context,
    )
    return web.Response(text=body, status=http_status, content_type="text/html", charset="utf-8")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


def _refused(request: web.Request, status: int, detail: str) -> web.Response:
    return render(request, "error.html", http_status=status, status_code=status, detail=detail)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _guarded(request, handler)
    except CsipError as exc:
        response = _refused(request, exc.status, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _refused(request, exc.status, exc.reason)
    except Exception:
        log.exception("console %s %s failed", request.method, safe(request.path))
        response = _refused(request, 500, "something went wrong: see the server log")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        if request.method == "POST":
            form = await request.post()
            presented = str(form.get("csrf", ""))
            expected = request.cookies.get(LOGIN_COOKIE, "")
            if not presented or not expected or not hmac.compare_digest(presented, expected):
                return _refused(request, 403, "the form's CSRF token is missing or wrong: reload")
            request[FORM] = form
        return await handler(request)
    found = await request.app[OPERATORS].session(request.cookies.get(SESSION_COOKIE))
    if found is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/login")
        return _refused(request, 401, "log in first")
    request[OPERATOR], request[SESSION] = found
    if request.method == "POST":
        form = await request.post()
        if not OperatorService.csrf_matches(found[1], str(form.get("csrf", ""))):
            return _refused(request, 403, "the form's CSRF token is missing or wrong: reload")
        if request.path != f"{PREFIX}/logout":
            OperatorService.require_change(found[0])
        request[FORM] = form
    return await handler(request)


def login_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(console: ConsoleService, operators: OperatorService) -> web.Application:
    """The console as a sub-application, mounted at /console by web/admin_app.py."""
    from csip.web.console import pages

    app = web.Application(middlewares=[console_middleware])
    app[CONSOLE] = console
    app[OPERATORS] = operators
    app[TEMPLATES] = environment()
    pages.add_routes(app.router)
    return app
