"""Lab and benchmark aids that are off unless a setting turns them on."""

from __future__ import annotations

import os

from aiohttp import web

#: Response header naming the worker process that answered (setting lab_worker_header).
WORKER_HEADER = "X-Csip-Worker"


def stamp_worker(app: web.Application) -> None:
    """Every answer of `app` names this process, so a test or the bench can tell which of
    several workers (`csip serve --workers N`) served it. Not registered unless asked for:
    the hot path pays nothing otherwise."""
    pid = str(os.getpid())

    async def stamp(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = pid

    app.on_response_prepare.append(stamp)
