"""Changes reach every worker, whole (PostgreSQL): a change-log row per unit of work, a NOTIFY
carrying only its sequence number, replay in order, own rows skipped, and catching up after
the listening connection was lost (dropping everything only if the missed rows were pruned)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest

from csip.domain.changes import CertificateChanged, DeviceRef, MembershipChanged, SettingsChanged
from csip.domain.clock import Clock
from csip.services.bus import EVERYTHING, PgBus, asyncpg_dsn
from csip.services.changes import Changes
from csip.store import Store
from csip.store import der as der_store
from csip.store.uow import delete_changes_before

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - the condition is set by other code
            await asyncio.sleep(0.01)


class Worker:
    def __init__(self, store: Store, dsn: str) -> None:
        self.bus = PgBus(dsn, reconnect_delay=0.05)
        self.seen: list[str] = []
        self.bus.subscribe(self.seen.extend)
        self.changes = Changes(store, self.bus, Clock())


async def _kill_listener(bus: PgBus, dsn: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", bus._conn.get_server_pid())
    finally:
        await admin.close()


async def test_a_bulk_change_reaches_the_other_worker_whole(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    dsn = asyncpg_dsn(database_url)
    one, two = Worker(store, dsn), Worker(store, dsn)
    await one.bus.start()
    await two.bus.start()
    try:
        async with one.changes.unit_of_work() as tx:
            group = await der_store.insert_group(tx.session, "g", None, None, 0, 1)
            devices = tuple(DeviceRef(i, f"{i:040X}", None) for i in range(1, 2001))
            tx.record(MembershipChanged(group.id, devices))  # ~60 KB of tags: > 8,000 bytes
        await eventually(lambda: "member:2000" in two.seen)
        assert {f"member:{i}" for i in range(1, 2001)} <= set(two.seen)
        await asyncio.sleep(0.1)
        assert one.seen.count("member:1") == 1  # applied at commit; its own row is skipped
        assert two.bus.replayed == 1 and one.bus.replayed == 0
    finally:
        await one.bus.stop()
        await two.bus.stop()
        await store.close()


async def test_a_lost_listener_catches_up_from_its_last_row(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    dsn = asyncpg_dsn(database_url)
    one, two = Worker(store, dsn), Worker(store, dsn)
    await one.bus.start()
    await two.bus.start()
    gate = asyncio.Event()
    connect = two.bus._connect

    async def gated() -> None:
        await gate.wait()  # the database is "unreachable" until the test opens the gate
        await connect()

    two.bus._connect = gated  # type: ignore[method-assign]
    try:
        await one.changes.record(SettingsChanged())
        await eventually(lambda: "settings" in two.seen)
        await _kill_listener(two.bus, dsn)
        await eventually(lambda: two.bus._reconnect is not None)
        for index in range(3):
            await one.changes.record(CertificateChanged(f"{index:040X}"))
        await asyncio.sleep(0.2)
        assert not any(t.startswith("cert:") for t in two.seen)  # missed while away
        gate.set()
        await eventually(lambda: f"cert:{2:040X}" in two.seen)
        assert [t for t in two.seen if t.startswith("cert:")] == [
            f"cert:{i:040X}" for i in range(3)
        ]  # in commit order, each once
        assert EVERYTHING not in two.seen and two.bus.dropped_all == 0
        await one.changes.record(SettingsChanged())  # and it listens again
        await eventually(lambda: two.seen.count("settings") == 2)
    finally:
        await one.bus.stop()
        await two.bus.stop()
        await store.close()


async def test_a_listener_that_missed_pruned_rows_drops_everything(database_url: str) -> None:
    store = Store(database_url)
    await store.migrate()
    dsn = asyncpg_dsn(database_url)
    one, two = Worker(store, dsn), Worker(store, dsn)
    await one.bus.start()
    await two.bus.start()
    gate = asyncio.Event()
    connect = two.bus._connect

    async def gated() -> None:
        await gate.wait()
        await connect()

    two.bus._connect = gated  # type: ignore[method-assign]
    try:
        await _kill_listener(two.bus, dsn)
        await eventually(lambda: two.bus._reconnect is not None)
        await one.changes.record(CertificateChanged("A" * 40))
        await one.changes.record(CertificateChanged("B" * 40))
        async with store.transaction() as session:
            await delete_changes_before(session, time.time() + 1)  # pruned: all rows gone
        await one.changes.record(CertificateChanged("C" * 40))
        gate.set()
        await eventually(lambda: EVERYTHING in two.seen)
        await eventually(lambda: f"cert:{'C' * 40}" in two.seen)
        assert two.bus.dropped_all == 1
    finally:
        await one.bus.stop()
        await two.bus.stop()
        await store.close()
