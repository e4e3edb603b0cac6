"""Test support shared by every test module: the PKI bundle, TLS clients that validate
every 2030.5 body they receive, and a handle on a running server."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from csip.app import App, build
from csip.config import Settings
from csip.domain.clock import Clock
from csip.pki import testpki
from csip.sep2 import client as client_lib
from csip.sep2 import schema
from csip.web.server import Server
from csip.web.tls import client_context

NS = {"s": schema.SEP_NS}


@dataclass(frozen=True)
class Pki:
    directory: Path
    device_a: testpki.IssuedCert
    device_b: testpki.IssuedCert
    aggregator: testpki.IssuedCert
    aggregator_2: testpki.IssuedCert

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def link(self, name: str) -> dict[str, str]:
        """The attributes of a child link element (href, all), or {} when absent."""
        found = self.xml().find(f"{{{schema.SEP_NS}}}{name}")
        return {} if found is None else dict(found.attrib)

    def find(self, path: str) -> str | None:
        found = self.xml().find(path.replace("s:", f"{{{schema.SEP_NS}}}"))
        return None if found is None else found.text


@dataclass
class Sep2Client:
    """A 2030.5 client over real mutual TLS; checks every XML body it receives (through
    csip.sep2.client, the client the simulator and the harness use too)."""

    base: str
    session: aiohttp.ClientSession
    validator: etree.XMLSchema
    sent: list[Reply] = field(default_factory=list)

    async def request(
        self, method: str, path: str, body: bytes | str | None = None, **headers: str
    ) -> Reply:
        # the product's own 2030.5 client, sharing this session; it validates each reply
        client = client_lib.Sep2Client(
            self.base, None, validator=self.validator, session=self.session
        )
        try:
            got = await client.request(method, path, body, headers)
        except client_lib.InvalidReply as exc:
            raise AssertionError(f"{method} {path} emitted an invalid body: {exc}") from None
        reply = Reply(got.status, got.headers, got.body)
        self.sent.append(reply)
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: bytes | str) -> Reply:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: bytes | str) -> Reply:
        return await self.request("PUT", path, body)

    async def delete(self, path: str) -> Reply:
        return await self.request("DELETE", path)


def client_ssl(pki: Pki, cert: testpki.IssuedCert | None) -> ssl.SSLContext:
    if cert is None:
        return client_context(ca_file=pki.ca)
    return client_context(ca_file=pki.ca, cert_chain_file=cert.cert_path, key_file=cert.key_path)


@dataclass
class Running:
    server: Server
    pki: Pki
    validator: etree.XMLSchema
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    admin_token: str = ""

    @property
    def base(self) -> str:
        return f"https://localhost:{self.server.sep2_port}"

    @property
    def admin_base(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    def client(self, cert: testpki.IssuedCert | None) -> Sep2Client:
        connector = aiohttp.TCPConnector(ssl=client_ssl(self.pki, cert))
        session = aiohttp.ClientSession(connector=connector)
        self.sessions.append(session)
        return Sep2Client(self.base, session, self.validator)

    async def admin(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        session = aiohttp.ClientSession()
        try:
            async with session.request(
                method,
                self.admin_base + path,
                json=json,
                headers={"Authorization": f"Bearer {self.admin_token}"},
            ) as response:
                data = (
                    await response.json() if response.content_type == "application/json" else None
                )
                return response.status, data
        finally:
            await session.close()

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        await self.server.stop()


ServerFactory = Callable[..., Awaitable[Running]]

#: Run a test (or module, as pytestmark) on SQLite and on PostgreSQL.
BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


async def settle_bus(srv: Running) -> None:
    """Apply every change-log row committed so far, so a "no render, no query" check does
    not race a replay. A worker applies its own units of work at commit and skips their rows
    when it replays; rows of other workers arrive through LISTEN/NOTIFY on PostgreSQL."""
    from csip.services.bus import PgBus

    bus = srv.server.bus
    assert bus is not None
    if isinstance(bus, PgBus):
        await bus.replay()


class StillClock(Clock):
    """A clock that stands where the test puts it (`set`, `advance`), for service tests
    that compare figures stamped with "now" exactly, however slow the machine is."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.set(at)

    def now(self) -> float:
        return self._at

    def set(self, epoch_seconds: float) -> None:
        self._at = epoch_seconds
        self.offset = epoch_seconds - time.time()  # and tell whoever sleeps on the clock

    def advance(self, seconds: float) -> None:
        self._at += seconds
        self.offset = self._offset + seconds


@asynccontextmanager
async def built_app(data_dir: Path, pki: Pki, now: float, **settings: Any) -> AsyncIterator[App]:
    """csip's services built over a migrated SQLite file in `data_dir`, its clock set to
    `now`, no listener started: what service-level tests drive."""
    clock = StillClock(now)
    app = build(
        Settings(
            data_dir=data_dir, certs_dir=pki.directory, sep2_port=18443, **settings
        ).validate(),
        clock,
    )
    await app.store.migrate()
    try:
        yield app
    finally:
        await app.store.close()
