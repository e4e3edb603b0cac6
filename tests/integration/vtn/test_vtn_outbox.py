"""The outbox: rows commit with the change, a worker delivers them over real HTTP, failures
back off and finally give up, and a rolled-back change sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from csip.domain.clock import Clock
from csip.services.outbox import OutboxWorker, WebhookSender
from csip.store import Store
from csip.store import outbox as store_outbox
from csip.store.outbox import OutboxMessage

from support import BACKENDS

pytestmark = BACKENDS


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.auth: list[str] = []
        self.status = 200
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.status == 200:
            self.bodies.append(await request.read())
            self.auth.append(request.headers.get("Authorization", ""))
            self.got.set()
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    assert rec.runner is not None
    await rec.runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def store(database_url: str) -> AsyncIterator[Store]:
    st = Store(database_url)
    await st.migrate()
    yield st
    await st.close()


def message(url: str, n: int = 0) -> OutboxMessage:
    return OutboxMessage("webhook", url, f'{{"n": {n}}}'.encode(), headers={"Authorization": "x"})


async def test_committed_rows_are_delivered_promptly(store: Store, receiver: Receiver) -> None:
    clock = Clock()
    sender = WebhookSender(timeout=5)
    worker = OutboxWorker(store, clock, idle_poll=30)
    worker.register("webhook", sender)
    await worker.start()
    try:
        async with store.transaction() as s:
            await store_outbox.enqueue(s, [message(receiver.url, i) for i in range(3)], clock.now())
        worker.wake()
        await asyncio.wait_for(receiver.got.wait(), 5)
        for _ in range(50):
            if (await store_outbox.counts(store)).delivered == 3:
                break
            await asyncio.sleep(0.05)
        assert (await store_outbox.counts(store)).delivered == 3
        assert sorted(receiver.bodies) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert receiver.auth == ["x", "x", "x"]
    finally:
        await worker.stop()
        await sender.close()


async def test_rollback_enqueues_nothing(store: Store, receiver: Receiver) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as s:
            await store_outbox.enqueue(s, [message(receiver.url)], 0)
            raise RuntimeError("the change failed")
    assert await store_outbox.messages(store) == []


async def test_failures_back_off_then_give_up(store: Store, receiver: Receiver) -> None:
    clock = Clock()
    sender = WebhookSender(timeout=5)
    worker = OutboxWorker(store, clock, retry_delays=(10, 100, 300, 1800), max_attempts=5)
    worker.register("webhook", sender)
    receiver.status = 503
    try:
        async with store.transaction() as s:
            await store_outbox.enqueue(s, [message(receiver.url)], clock.now())
        expected_delays = [10, 100, 300, 1800]
        for delay in expected_delays:
            assert await worker.run_once()
            ((row, state),) = await store_outbox.messages(store)
            assert state == "pending"
            due = await store_outbox.next_due(store)
            assert due is not None and abs(due - (clock.now() + delay)) < 2
            assert not await worker.run_once()  # not due yet
            clock.advance(delay + 1)
        assert await worker.run_once()  # fifth attempt fails: give up, recorded
        ((row, state),) = await store_outbox.messages(store)
        assert state == "failed" and row.attempts == 5
        assert await store_outbox.next_due(store) is None
        # a receiver that is back gets the next message
        receiver.status = 200
        async with store.transaction() as s:
            await store_outbox.enqueue(s, [message(receiver.url, 7)], clock.now())
        assert await worker.run_once()
        assert receiver.bodies[-1] == b'{"n": 7}'
    finally:
        receiver.status = 200
        await sender.close()


async def test_unknown_kind_is_retried_not_lost(store: Store) -> None:
    clock = Clock()
    worker = OutboxWorker(store, clock)
    async with store.transaction() as s:
        await store_outbox.enqueue(s, [OutboxMessage("sep2", "x", b"")], clock.now())
    assert await worker.run_once()
    ((row, state),) = await store_outbox.messages(store)
    assert state == "pending" and row.attempts == 1


async def test_two_workers_never_deliver_a_row_twice(database_url: str, receiver: Receiver) -> None:
    """Several processes share one PostgreSQL: claims skip rows another worker holds."""
    stores = [Store(database_url), Store(database_url)]
    await stores[0].migrate()
    clock = Clock()
    senders = [WebhookSender(timeout=5), WebhookSender(timeout=5)]
    workers = [OutboxWorker(st, clock, batch=7) for st in stores]
    for worker, sender in zip(workers, senders, strict=True):
        worker.register("webhook", sender)
    try:
        async with stores[0].transaction() as s:
            await store_outbox.enqueue(s, [message(receiver.url, i) for i in range(60)], 0)
        while any(await asyncio.gather(*(w.run_once() for w in workers))):
            pass
        assert sorted(receiver.bodies) == sorted(f'{{"n": {i}}}'.encode() for i in range(60))
        assert (await store_outbox.counts(stores[0])).delivered == 60
    finally:
        for sender in senders:
            await sender.close()
        for st in stores:
            await st.close()
