"""Fixtures: a real test PKI, real servers on ephemeral ports (SQLite and PostgreSQL).

Shared classes live in support.py (import them from there, never from a conftest).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lxml import etree

from csip.config import Settings
from csip.pki import testpki
from csip.sep2 import schema
from csip.web.server import Server

from notify_receiver import receiver  # noqa: F401 - the 2030.5 notification receiver fixture
from support import Pki, Running, ServerFactory

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


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


async def _pg_available() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
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
            vtn_port=overrides.pop("vtn_port", 0),  # OpenADR 3 VTN (issue 4)
            certs_dir=pki.directory,
            **overrides,
        ).validate()
        server = Server(settings)
        await server.start()
        assert server.store is not None
        from csip.services.admin import admin_token

        token = await admin_token(server.store, data_dir=settings.data_dir)
        instance = Running(server, pki, validators[settings.profile], admin_token=token)
        running.append(instance)
        return instance

    yield start
    for instance in running:
        await instance.close()


@pytest_asyncio.fixture(loop_scope="session")
async def srv(make_server: ServerFactory) -> Running:
    return await make_server()


# ---- OpenADR 3 VTN (issue 4) ----------------------------------------------------------------
# `csip serve` processes started by tests bind the VTN on an ephemeral port unless a test asks
# for one (--vtn-port), so parallel runs never fight over the default 8445.
os.environ.setdefault("CSIP_VTN_PORT", "0")
