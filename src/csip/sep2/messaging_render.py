"""Rendering the Messaging function set in sep.xsd element order (render once, serve many)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from csip.domain.der import EventStatus
from csip.domain.messaging import MessagingProgram, TextMessage
from csip.sep2.der_render import event_status_element
from csip.sep2.xml import E, link, serialize


def _program_element(program: MessagingProgram, messages: int, active: int) -> Any:
    children = [E.mRID(program.mrid)]
    if program.description:
        children.append(E.description(program.description[:32]))
    children += [
        link("ActiveTextMessageListLink", f"{program.href}/acttxt", active),
        E.locale(program.locale[:42]),
        E.primacy(str(program.primacy)),
        link("TextMessageListLink", f"{program.href}/txt", messages),
    ]
    return E.MessagingProgram(*children, href=program.href, subscribable="0")


def messaging_program(program: MessagingProgram, messages: int, active: int) -> bytes:
    return serialize(_program_element(program, messages, active))


def messaging_program_list(
    href: str, total: int, page: Sequence[tuple[MessagingProgram, int, int]], poll_rate: int
) -> bytes:
    element = E.MessagingProgramList(
        *(_program_element(p, messages, active) for p, messages, active in page),
        href=href,
        subscribable="1",
        all=str(total),
        results=str(len(page)),
        pollRate=str(poll_rate),
    )
    return serialize(element)


def _message_element(message: TextMessage, status: EventStatus, reply_to: str | None) -> Any:
    children = [E.mRID(message.mrid)]
    children += [
        E.creationTime(str(message.creation_time)),
        event_status_element(status),
        E.interval(E.duration(str(message.duration)), E.start(str(message.start))),
    ]
    if message.originator:
        children.append(E.originator(message.originator[:20]))
    children += [E.priority(str(message.priority)), E.textMessage(message.text)]
    attributes = {"href": message.href, "subscribable": "0"}
    if reply_to is not None:  # only where csip takes the answers (a ResponseSet exists)
        attributes["replyTo"] = reply_to
        attributes["responseRequired"] = "01"
    return E.TextMessage(*children, **attributes)


def text_message(message: TextMessage, status: EventStatus, reply_to: str | None = None) -> bytes:
    return serialize(_message_element(message, status, reply_to))


def text_message_list(
    href: str,
    total: int,
    page: Sequence[tuple[TextMessage, EventStatus]],
    reply_to: str | None = None,
) -> bytes:
    element = E.TextMessageList(
        *(_message_element(m, s, reply_to) for m, s in page),
        href=href,
        subscribable="1" if href.endswith("/txt") else "0",
        all=str(total),
        results=str(len(page)),
    )
    return serialize(element)
