"""Shared fixtures: a real test PKI, real servers on ephemeral ports, real TLS clients.

Every application/sep+xml body a test client receives is validated against the server's
schema profile before the test sees it, so every test also checks the XSD validity of what
the server emits.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from lxml import etree

from csip.config import Settings
from csip.pki import testpki
from csip.sep2 import schema
from csip.web.server import Server
from csip.web.tls import client_context

NS = {"s": schema.SEP_NS}
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    testpki.init_pki(directory)
    return Pki(
        directory,
        testpki.issue_device(directory, "oem-a", "A-0001"),
        testpki.issue_device(directory, "oem-b", "B-0001"),
        testpki.issue_aggregator(directory, "agg-one"),
        testpki.issue_aggregator(directory, "agg-two"),
    )


@pytest.fixture(scope="session")
def validators() -> dict[str, etree.XMLSchema]:
    try:
        return {p: schema.load(p).validator for p in ("csip", "csip-aus")}
    except schema.SchemaMissingError as exc:
        pytest.fail(f"{exc} (make test fetches them)")


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def find(self, path: str) -> str | None:
        found = self.xml().find(path.replace("s:", "{%s}" % schema.SEP_NS))
        return None if found is None else found.text


@dataclass
class Sep2Client:
    """A 2030.5 client over real mutual TLS; checks every XML body it receives."""

    base: str
    session: aiohttp.ClientSession
    validator: etree.XMLSchema
    sent: list[Reply] = field(default_factory=list)

    async def request(
        self, method: str, path: str, body: bytes | str | None = None, **headers: str
    ) -> Reply:
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            headers.setdefault("Content-Type", "application/sep+xml")
        async with self.session.request(
            method, self.base + path, data=data, headers=headers, allow_redirects=False
        ) as response:
            reply = Reply(response.status, response.headers, await response.read())
        if reply.body and reply.headers.get("Content-Type", "").startswith("application/sep+xml"):
            document = etree.fromstring(reply.body)
            assert self.validator.validate(document), (
                f"{method} {path} emitted an invalid body: {self.validator.error_log}\n"
                f"{reply.body.decode()}"
            )
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
                data = await response.json() if response.content_type == "application/json" else None
                return response.status, data
        finally:
            await session.close()

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        await self.server.stop()


async def _pg_available() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}"
        return
    import asyncpg

    if not await _pg_available():
        message = "PostgreSQL is not reachable on 127.0.0.1:5432"
        if os.environ.get("CSIP_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"csip_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


ServerFactory = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_server(
    pki: Pki, validators: dict[str, etree.XMLSchema], database_url: str, tmp_path: Path
) -> AsyncIterator[ServerFactory]:
    """Start csip in-process on ephemeral ports with the test PKI; stopped after the test."""
    running: list[Running] = []

    async def start(**overrides: Any) -> Running:
        settings = Settings(
            data_dir=tmp_path,
            db=overrides.pop("db", database_url),
            host="127.0.0.1",
            sep2_port=0,
            admin_port=0,
            certs_dir=pki.directory,
            **overrides,
        ).validate()
        server = Server(settings)
        await server.start()
        assert server.store is not None
        from csip.services.admin import admin_token

        token = await admin_token(server.store)
        instance = Running(server, pki, validators[settings.profile], admin_token=token)
        running.append(instance)
        return instance

    yield start
    for instance in running:
        await instance.close()


@pytest_asyncio.fixture(loop_scope="session")
async def srv(make_server: ServerFactory) -> Running:
    return await make_server()


BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
