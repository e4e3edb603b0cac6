"""Messaging function set documents are valid sep.xsd and carry the message as written."""

from __future__ import annotations

from lxml import etree

from csip.domain.messaging import MessagingProgram, TextMessage, is_listed, is_shown, message_status
from csip.sep2 import messaging_render as render
from csip.sep2.schema import SEP_NS

T0 = 1_900_000_000
PROGRAM = MessagingProgram(3, "A" * 32, 7, "peak notices", "en-US", 10)
MESSAGE = TextMessage(5, "B" * 32, 3, T0 - 600, T0, 3600, "Peak event 5-8 pm", 3, "utility")
NS = {"s": SEP_NS}


def test_programs_and_messages_validate_and_say_what_was_written(
    validators: dict[str, etree.XMLSchema],
) -> None:
    documents = [
        render.messaging_program_list("/edev/1/fsa/7/msg", 1, [(PROGRAM, 1, 0)], 900),
        render.messaging_program(PROGRAM, 1, 1),
        render.text_message_list(
            "/msg/3/txt", 1, [(MESSAGE, message_status(MESSAGE, T0))], "/rsps/m3/rsp"
        ),
        render.text_message(MESSAGE, message_status(MESSAGE, T0 - 1), "/rsps/m3/rsp"),
    ]
    for document in documents:
        for validator in validators.values():
            assert validator.validate(etree.fromstring(document)), validator.error_log
    message = etree.fromstring(documents[2]).find("s:TextMessage", NS)
    assert message is not None
    assert message.findtext("s:textMessage", namespaces=NS) == "Peak event 5-8 pm"
    assert message.findtext("s:priority", namespaces=NS) == "3"
    assert message.findtext("s:EventStatus/s:currentStatus", namespaces=NS) == "1"


def test_a_message_is_shown_while_active_and_listed_until_over() -> None:
    assert not is_shown(MESSAGE, T0 - 1) and is_shown(MESSAGE, T0)
    assert is_listed(MESSAGE, T0 + 3599) and not is_listed(MESSAGE, T0 + 3600)
    cancelled = TextMessage(6, "C" * 32, 3, T0 - 600, T0, 3600, "x", 1, cancelled_at=T0 + 60)
    assert message_status(cancelled, T0 + 60).current == 2
    assert not is_shown(cancelled, T0 + 61)
