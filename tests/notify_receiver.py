"""A 2030.5 notification receiver for tests: an aggregator's endpoint with its own TLS server
that demands a client certificate, so every notification arrives over mutual TLS signed by
csip's certificate (CSIP IG §6.5)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from aiohttp import web
from lxml import etree

from csip.web.tls import server_context

from support import Pki

__all__ = ["Receiver", "receiver", "subscription_xml"]


@dataclass
class Receiver:
    port: int
    received: list[etree._Element] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    peers: list[bytes] = field(default_factory=list)
    fail_next: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def uri(self) -> str:
        return f"https://127.0.0.1:{self.port}/notify"

    async def wait(self, count: int) -> list[etree._Element]:
        async with asyncio.timeout(10.0):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@pytest_asyncio.fixture(loop_scope="session")
async def receiver(pki: Pki) -> AsyncIterator[Receiver]:
    """An aggregator's notification endpoint: HTTPS with a certificate of the same PKI."""
    state = Receiver(0)

    async def notify(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        state.peers.append(ssl_object.getpeercert(binary_form=True) if ssl_object else b"")
        if state.fail_next:
            state.fail_next -= 1
            return web.Response(status=503)
        body = await request.read()
        state.raw.append(body)
        state.received.append(etree.fromstring(body))
        state.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    context = server_context(
        ca_file=pki.ca,
        cert_chain_file=pki.directory / "server-chain.pem",
        key_file=pki.directory / "server.key",
    )
    context.verify_mode = ssl.CERT_REQUIRED
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    state.port = int(runner.addresses[0][1])
    yield state
    await runner.cleanup()


def subscription_xml(resource: str, uri: str, limit: int = 5, extra: str = "") -> str:
    return (
        '<Subscription xmlns="urn:ieee:std:2030.5:ns">'
        f"<subscribedResource>{resource}</subscribedResource>{extra}<encoding>0</encoding>"
        f"<level>-S1-L1-R1</level><limit>{limit}</limit><notificationURI>{uri}</notificationURI>"
        "</Subscription>"
    )
