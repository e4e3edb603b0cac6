"""Several workers on one PostgreSQL: one event's report is updated by one of them at a time.

A worker that finds the event's row claimed skips it (SKIP LOCKED) instead of queueing behind
it, and the claim ends with the holder's transaction."""

from __future__ import annotations

import pytest

from csip.store import Store
from csip.store.engine_reports import claim_report, update_report


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_claimed_report_is_skipped_by_another_worker(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    async with store.transaction() as first:
        assert await claim_report(first, "event-1") is not None  # the row now exists
    async with store.transaction() as holder:
        claimed = await claim_report(holder, "event-1")
        assert claimed is not None and claimed.digest == ""
        async with store.transaction() as other:
            assert await claim_report(other, "event-1") is None  # held: skipped, not waited
            assert await claim_report(other, "event-2") is not None  # other events are free
        await update_report(holder, "event-1", "report-1", "digest-1", 100)
    async with store.transaction() as later:
        again = await claim_report(later, "event-1")
        assert again is not None and (again.report_id, again.digest) == ("report-1", "digest-1")
    await store.close()
