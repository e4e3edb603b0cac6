"""Fixtures of the VTN tests: a running csip with the VTN over HTTPS (test PKI), MQTT on the
real broker (a topic prefix per test), loopback webhooks allowed, quick retries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from vtn_spec import BASE_PATH
from vtn_support import MqttListener, VtnClient, WebhookReceiver

from csip.web.tls import client_context

from support import Running, ServerFactory

MQTT_URL = "mqtt://127.0.0.1:1883"


@dataclass
class Vtn:
    running: Running
    session: aiohttp.ClientSession
    prefix: str
    clients: list[VtnClient] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.running.server.vtn_port}{BASE_PATH}"

    def anonymous(self) -> VtnClient:
        return VtnClient(self.base, self.session)

    async def client(self, name: str, role: str, scopes: list[str] | None = None) -> VtnClient:
        """A client created through the admin API, with a token from /auth/token."""
        status, created = await self.running.admin(
            "POST", "/api/vtn/clients", {"name": name, "role": role, "scopes": scopes}
        )
        assert status == 201, created
        client = VtnClient(self.base, self.session, client_id=created["client_id"])
        async with self.session.post(
            self.base + "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": created["client_id"],
                "client_secret": created["client_secret"],
            },
        ) as response:
            assert response.status == 200, await response.text()
            client.token = (await response.json())["access_token"]
        self.clients.append(client)
        return client


VtnFactory = Callable[..., Awaitable[Vtn]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_vtn(make_server: ServerFactory) -> AsyncIterator[VtnFactory]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(**overrides: Any) -> Vtn:
        prefix = f"test-{uuid.uuid4().hex[:10]}"
        settings: dict[str, Any] = {
            "vtn_mqtt_url": MQTT_URL,
            "vtn_mqtt_topic_prefix": prefix,
            "vtn_webhook_allow_loopback": True,
            "outbox_retry_delays": [0.5, 1.0],
            "vtn_max_body_bytes": 262_144,
            **overrides,
        }
        running = await make_server(**settings)
        connector = aiohttp.TCPConnector(ssl=client_context(ca_file=running.pki.ca))
        session = aiohttp.ClientSession(connector=connector)
        sessions.append(session)
        return Vtn(running, session, prefix)

    yield start
    for session in sessions:
        await session.close()


@pytest_asyncio.fixture(loop_scope="session")
async def vtn(make_vtn: VtnFactory) -> Vtn:
    return await make_vtn()


@pytest_asyncio.fixture(loop_scope="session")
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.close()


@pytest_asyncio.fixture(loop_scope="session")
async def mqtt() -> AsyncIterator[MqttListener]:
    listener = MqttListener()
    yield listener
    await listener.close()
