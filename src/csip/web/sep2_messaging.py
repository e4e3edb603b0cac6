"""The Messaging function set: MessagingProgramList under each FunctionSetAssignments,
MessagingProgram, TextMessageList, ActiveTextMessageList and TextMessage."""

from __future__ import annotations

from aiohttp import web

from csip.services.messaging import MessagingService
from csip.web.paths import path_id
from csip.web.sep2_common import PRINCIPAL, cached, page_of, xml

MESSAGING = web.AppKey("messaging_service", MessagingService)


def _messaging(request: web.Request) -> MessagingService:
    return request.app[MESSAGING]


async def get_program_list(request: web.Request) -> web.Response:
    messaging, gid = _messaging(request), path_id(request, "gid")
    return xml(await messaging.program_list(request[PRINCIPAL], gid, page_of(request)))


async def get_program(request: web.Request) -> web.Response:
    return xml(await _messaging(request).program(request[PRINCIPAL], path_id(request, "mid")))


async def get_message_list(request: web.Request) -> web.Response:
    messaging, mid = _messaging(request), path_id(request, "mid")
    return xml(await messaging.message_list(request[PRINCIPAL], mid, page_of(request)))


async def get_active_list(request: web.Request) -> web.Response:
    messaging, mid = _messaging(request), path_id(request, "mid")
    return xml(await messaging.message_list(request[PRINCIPAL], mid, page_of(request), True))


async def get_message(request: web.Request) -> web.Response:
    messaging, mid = _messaging(request), path_id(request, "mid")
    return xml(await messaging.message(request[PRINCIPAL], mid, path_id(request, "tid")))


def setup(app: web.Application, messaging: MessagingService) -> None:
    """Add this function set's routes to the 2030.5 app."""
    app[MESSAGING] = messaging
    routes = app.router
    routes.add_get(r"/fsa/{gid:\d+}/msg", cached(get_program_list))
    routes.add_get(r"/msg/{mid:\d+}", cached(get_program))
    routes.add_get(r"/msg/{mid:\d+}/txt", cached(get_message_list))
    routes.add_get(r"/msg/{mid:\d+}/txt/{tid:\d+}", cached(get_message))
    routes.add_get(r"/msg/{mid:\d+}/acttxt", cached(get_active_list))
