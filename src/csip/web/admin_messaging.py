"""Admin API for the Messaging function set: the utility writes text messages to a group's
devices, lists them (history included) and cancels them."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from csip.domain.dispatch import MessageDraft
from csip.domain.messaging import (
    MAX_ORIGINATOR,
    MAX_TEXT,
    PRIORITIES,
    MessagingProgram,
    TextMessage,
    message_status,
)
from csip.services.messaging import MessagingService
from csip.web.paths import path_id

MESSAGING_ADMIN = web.AppKey("messaging_admin", MessagingService)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(_Body):
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="the textMessage")
    start: int = Field(ge=0, description="epoch seconds")
    duration: int = Field(gt=0, le=0xFFFFFFFF, description="seconds")
    priority: int = Field(1, ge=0, le=3, description="0 low, 1 normal, 2 high, 3 critical")
    originator: str = Field("", max_length=MAX_ORIGINATOR, description="who publishes it")


class MessagingProgramIn(_Body):
    locale: str | None = Field(None, min_length=1, max_length=42, description="e.g. en-US")
    primacy: int | None = Field(None, ge=0, le=255)


def program_json(program: MessagingProgram | None) -> dict[str, Any] | None:
    if program is None:
        return None
    return {
        "id": program.id,
        "mrid": program.mrid,
        "group": program.group_id,
        "href": program.href,
        "description": program.description,
        "locale": program.locale,
        "primacy": program.primacy,
    }


def message_json(message: TextMessage, now: int) -> dict[str, Any]:
    status = message_status(message, now)
    current = status.current.name.lower()
    if message.cancelled_at is None and now >= message.end:
        current = "completed"  # it ran and has left devices' lists
    return {
        "id": message.id,
        "mrid": message.mrid,
        "program": message.program_id,
        "href": message.href,
        "text": message.text,
        "start": message.start,
        "duration": message.duration,
        "priority": message.priority,
        "priority_name": PRIORITIES[message.priority],
        "originator": message.originator,
        "creation_time": message.creation_time,
        "cancelled_at": message.cancelled_at,
        "source": message.source,
        "status": {"current": current, "date_time": status.date_time},
    }


def _svc(request: web.Request) -> MessagingService:
    return request.app[MESSAGING_ADMIN]


def _gid(request: web.Request) -> int:
    return path_id(request, "gid")


async def post_message(request: web.Request, body: MessageIn) -> web.Response:
    svc = _svc(request)
    draft = MessageDraft(body.start, body.duration, body.text, body.priority, body.originator)
    (message,) = await svc.post(_gid(request), [draft], source="admin")
    return web.json_response(message_json(message, svc.clock.now_int()), status=201)


async def list_messages(request: web.Request) -> web.Response:
    svc = _svc(request)
    program, messages = await svc.history(_gid(request))
    now = svc.clock.now_int()
    return web.json_response(
        {"program": program_json(program), "items": [message_json(m, now) for m in messages]}
    )


async def cancel_message(request: web.Request) -> web.Response:
    svc = _svc(request)
    message = await svc.cancel(_gid(request), path_id(request, "mid"))
    return web.json_response(message_json(message, svc.clock.now_int()))


async def put_messaging_program(request: web.Request, body: MessagingProgramIn) -> web.Response:
    program = await _svc(request).set_program(_gid(request), body.locale, body.primacy)
    return web.json_response(program_json(program))


def routes() -> tuple[Any, ...]:
    """This module's part of the admin API's route table (see admin_app.ROUTES)."""
    from csip.web.admin_app import Route
    from csip.web.admin_programs import _with_body

    return (
        Route(
            "POST",
            "/api/groups/{gid}/messages",
            _with_body(MessageIn, post_message),
            "Write a TextMessage to a group's devices (its MessagingProgram made as needed)",
            MessageIn,
            201,
        ),
        Route(
            "GET",
            "/api/groups/{gid}/messages",
            list_messages,
            "A group's MessagingProgram and every message it had, with its status now",
        ),
        Route(
            "POST",
            "/api/groups/{gid}/messages/{mid}/cancel",
            cancel_message,
            "Cancel a TextMessage (it stays, EventStatus Cancelled)",
        ),
        Route(
            "PUT",
            "/api/groups/{gid}/messaging-program",
            _with_body(MessagingProgramIn, put_messaging_program),
            "Make the group's MessagingProgram or set its locale and primacy",
            MessagingProgramIn,
        ),
    )
