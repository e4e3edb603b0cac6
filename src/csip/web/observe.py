"""What each request leaves behind: its metrics, and (with `access_log`) one access line.

Both come from aiohttp's access-log hook, which every request that reaches aiohttp passes
through once its response is written (handlers, 404s, malformed requests answered by
aiohttp itself), with or without middlewares. A middleware would do the same at a cost on
every poll and would turn the 2030.5 fast lane off (web/limits.py hands every request to the
app when an app has middlewares); the fast lane counts its own answers and writes their
access lines (`fast_line`) itself (web/fastlane.py).

One request, one line: a refusal that would log its reason (a malformed request, a bad body)
hands the reason to the access line when access lines are on (`explain`), and logs it itself
at INFO when they are off, so a malformed request is one INFO line either way, never a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from csip.logsafe import safe
from csip.metrics import CONTENT_TYPE, UNMATCHED, Metrics

__all__ = [
    "METRICS",
    "REFRESH",
    "Observer",
    "explain",
    "fast_line",
    "get_metrics",
    "observer_for",
    "route_of",
]

access_log = logging.getLogger("csip.access")

#: The process's metrics, on every face's application (csip.app.build).
METRICS = web.AppKey("csip_metrics", Metrics)
#: Why a request was refused, for its access line (set by `explain`).
DETAIL = web.RequestKey("csip_detail", str)


def route_of(request: BaseRequest) -> str:
    """The canonical pattern of the route that answered ("/edev/{id}"), or UNMATCHED.

    Read from the request's private match info: the public property asserts a match exists,
    and a request aiohttp refused before routing (bad framing) has none.
    """
    info = getattr(request, "_match_info", None)
    if info is None:
        return UNMATCHED
    resource = info.route.resource
    if resource is None:
        return UNMATCHED
    canonical: str = resource.canonical
    return UNMATCHED if canonical == "/{tail}" else canonical


class Observer(AbstractAccessLogger):
    """aiohttp's access logger, made per connection: metrics always, a line if asked.
    The listener's subclass (`observer_for`) carries its face, metrics and access setting."""

    face = "sep2"
    metrics: Metrics | None = None
    access = False

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = route_of(request)
        status = response.status
        metrics = self.metrics
        if metrics is not None:
            metrics.request(self.face, route, status, time)
        if self.access:
            detail = request.get(DETAIL)
            level = logging.WARNING if status >= 500 else logging.INFO
            extra: dict[str, Any] = {
                "face": self.face,
                "method": request.method,
                "route": route,
                "path": safe(request.path),
                "status": status,
                "duration_ms": round(time * 1000, 3),
                "peer": request.remote or "",
            }
            if detail:
                extra["detail"] = detail
            access_log.log(
                level,
                "%s %s %s %d %.1f ms%s",
                self.face,
                request.method,
                extra["path"],
                status,
                time * 1000,
                f": {detail}" if detail else "",
                extra=extra,
            )

    @property
    def enabled(self) -> bool:
        return True


def fast_line(method: str, target: bytes, route: str, peer: str, duration: float) -> None:
    """The access line of a 2030.5 poll the fast lane answered (web/fastlane.py): the same
    fields as the app's lines, with `lane: fast`."""
    path = safe(unquote(target.split(b"?", 1)[0].decode("latin-1")))
    access_log.info(
        "sep2 %s %s 200 %.1f ms (fast lane)",
        method,
        path,
        duration * 1000,
        extra={
            "face": "sep2",
            "method": method,
            "route": route,
            "path": path,
            "status": 200,
            "duration_ms": round(duration * 1000, 3),
            "peer": peer,
            "lane": "fast",
        },
    )


def observer_for(face: str, metrics: Metrics | None, access: bool) -> type[Observer]:
    """The access-logger class of one listener (aiohttp instantiates it per connection)."""
    return type(
        f"Observer_{face}", (Observer,), {"face": face, "metrics": metrics, "access": access}
    )


def explain(request: BaseRequest, logger: logging.Logger, message: str, *args: Any) -> None:
    """Log why a request was refused (INFO), as part of its access line when there is one."""
    protocol = request.protocol
    observer = getattr(protocol, "access_logger", None)
    if isinstance(observer, Observer) and observer.access:
        request[DETAIL] = message % args if args else message
    else:
        logger.info(message, *args)


#: Reads the figures /metrics takes from the database (csip.app.App.refresh_metrics).
REFRESH: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("csip_metrics_refresh")


async def get_metrics(request: web.Request) -> web.Response:
    """GET /metrics on the admin face (behind its bearer token, listed in its route table):
    the database figures read, then the exposition."""
    refresh = request.app.get(REFRESH)
    if refresh is not None:
        await refresh()
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
