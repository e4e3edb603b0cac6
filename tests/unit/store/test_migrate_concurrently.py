"""Two processes starting on one fresh database (`csip serve` and `csip admin token`, or
several hosts) migrate it once: the second waits for the first instead of failing on a table
that already exists."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from csip.store import Store

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


async def test_concurrent_first_migrations_both_succeed(database_url: str, tmp_path: Path) -> None:
    stores = [Store(database_url) for _ in range(3)]
    try:
        # a TaskGroup, not gather: if one fails, the others stop here rather than migrate on
        # into the next test after their stores are closed
        async with asyncio.TaskGroup() as group:
            for store in stores:
                group.create_task(store.migrate())
        await stores[0].migrate()  # and again, later: nothing to do
    finally:
        for store in stores:
            await store.close()
