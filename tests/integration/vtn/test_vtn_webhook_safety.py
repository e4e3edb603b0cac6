"""Delivery keeps webhooks out of internal hosts even after the echo check passed (a host
re-pointed by DNS, an IP literal): only lab mode reaches loopback."""

from __future__ import annotations

import pytest
from vtn_support import WebhookReceiver

from csip.services.outbox import WebhookSender
from csip.services.vtn_notify import SafeResolver
from csip.store.outbox import OutboxMessage


async def test_delivery_refuses_internal_addresses(webhook: WebhookReceiver) -> None:
    strict = SafeResolver(allow_loopback=False)
    sender = WebhookSender(timeout=2, resolver=strict, url_guard=strict.check_literal)
    try:
        for url in (webhook.url(), f"http://localhost:{webhook.port}/x", "http://10.0.0.1/x"):
            with pytest.raises(OSError):
                await sender(OutboxMessage("webhook", url, b"{}"))
    finally:
        await sender.close()
    assert webhook.notifications == []
    lab = SafeResolver(allow_loopback=True)
    sender = WebhookSender(timeout=2, resolver=lab, url_guard=lab.check_literal)
    try:
        await sender(OutboxMessage("webhook", f"http://localhost:{webhook.port}/x", b"{}"))
    finally:
        await sender.close()
    assert webhook.notifications == [{}]
