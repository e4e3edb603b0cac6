"""Alembic migrations build exactly the schema the SQLModel tables describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from csip.store import Store
from csip.store.tables import SQLModel

from support import BACKENDS


@BACKENDS
async def test_migrations_match_the_models(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    await store.migrate()  # idempotent on every start

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, SQLModel.metadata))

    async with store.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    await store.close()
    assert differences == []
