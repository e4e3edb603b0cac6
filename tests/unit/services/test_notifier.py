"""2030.5 notifications never go to internal addresses unless the lab config allows it."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from csip.services.subscriptions import Sep2Notifier
from csip.services.vtn_notify import SafeResolver
from csip.store.outbox import OutboxMessage


@pytest.mark.parametrize(
    "target", ["https://10.0.0.5/n", "https://192.168.1.1:8443/n", "https://[fd00::1]/n"]
)
async def test_internal_literal_targets_are_refused_before_anything_is_sent(target: str) -> None:
    resolver = SafeResolver(False)

    class Unlisted:  # no aggregator allow-list names these hosts; nothing else is reached
        async def admitted_hosts(self) -> frozenset[str]:
            return frozenset({"10.9.0.0/16"})

    subscriptions: Any = Unlisted()
    notifier = Sep2Notifier(subscriptions, ssl.create_default_context(), resolver=resolver)
    with pytest.raises(OSError, match="internal address"):
        await notifier(OutboxMessage(kind="sep2", target=target, body=b"{}"))
    await notifier.close()
    await resolver.close()
