"""Issue 9 item 22: a burst of MQTT publishes (one per VEN per event) against the real
Mosquitto at 127.0.0.1:1883 logs one summary line, not a WARNING per publish past ten."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from vtn_support import MqttListener

from csip.services.vtn_notify import MqttSender
from csip.store.outbox import OutboxMessage

BURST = 400


async def test_a_publish_burst_logs_one_summary_line(caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"csip-test/{uuid.uuid4().hex[:8]}"
    listener = MqttListener()
    await listener.start([f"{prefix}/#"])
    sender = MqttSender("mqtt://127.0.0.1:1883")
    try:
        with caplog.at_level(logging.DEBUG):
            messages = [
                OutboxMessage("mqtt", f"{prefix}/ven{i}/events", b'{"n": %d}' % i)
                for i in range(BURST)
            ]
            await asyncio.gather(*(sender(m) for m in messages))
            await listener.wait_for(BURST, within=20)
        assert len(listener.messages) == BURST
        noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not noisy, [r.getMessage() for r in noisy]
        summaries = [r for r in caplog.records if "in flight" in r.getMessage()]
        assert len(summaries) == 1, [r.getMessage() for r in summaries]
        assert sender.backlog.total > 0
    finally:
        await sender.close()
        await listener.close()
