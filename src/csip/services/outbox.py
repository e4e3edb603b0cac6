"""Delivering the outbox: webhooks, MQTT publishes and (later) 2030.5 notifications.

Writers insert rows in their own transaction (``csip.store.outbox.enqueue``) and call
``wake()``; this worker claims due rows, hands each to the sender registered for its kind and
marks it delivered, or reschedules it with backoff (``outbox_retry_delays``, reaching past ten
minutes), giving up after ``outbox_max_attempts`` with the last error recorded. The writer
never waits for delivery. Rows live in the database, so a SIGKILL loses nothing: a claimed row
whose delivery never finished becomes due again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from csip.domain.clock import Clock
from csip.logsafe import safe
from csip.metrics import Metrics
from csip.store import Store
from csip.store import outbox as store_outbox
from csip.store.outbox import OutboxMessage

log = logging.getLogger(__name__)

#: A sender delivers one message or raises (any exception means "try again later").
Sender = Callable[[OutboxMessage], Awaitable[None]]


class DeliveryError(Exception):
    """The receiver did not accept the message."""


class WebhookSender:
    """POSTs bodies over one pooled keep-alive ClientSession (aggregators get many at once)."""

    def __init__(
        self,
        timeout: float = 10.0,
        concurrency: int = 200,
        resolver: Any = None,
        url_guard: Callable[[str], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.concurrency = concurrency
        #: An aiohttp resolver that may refuse addresses, and a check of the URL itself
        #: (IP literals bypass resolvers): how the VTN keeps webhooks out of internal hosts.
        self.resolver = resolver
        self.url_guard = url_guard
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, keepalive_timeout=60, resolver=self.resolver
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "csip-vtn"},
            )
        return self._session

    async def __call__(self, message: OutboxMessage) -> None:
        if self.url_guard is not None:
            self.url_guard(message.target)
        headers = {"Content-Type": message.content_type, **message.headers}
        async with self.session().post(
            message.target, data=message.body, headers=headers, allow_redirects=False
        ) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise DeliveryError(f"HTTP {response.status} from {message.target}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class OutboxWorker:
    """One per process; several processes on one PostgreSQL share the work safely."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        retry_delays: Sequence[float] = (10, 100, 300, 1800),
        max_attempts: int = 8,
        batch: int = 500,
        lease: float = 120.0,
        idle_poll: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        #: Deliveries, failures and lag by kind (csip.metrics), or None.
        self.metrics = metrics
        self.clock = clock
        self.retry_delays = [float(d) for d in retry_delays]
        self.max_attempts = max_attempts
        self.batch = batch
        self.lease = lease
        #: Other processes' writes are noticed at least this often.
        self.idle_poll = idle_poll
        self.senders: dict[str, Sender] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def register(self, kind: str, sender: Sender) -> None:
        """Plug in the sender of one kind ("webhook", "mqtt", "sep2" ...)."""
        self.senders[kind] = sender

    def wake(self) -> None:
        """Called by a writer right after its commit: deliver now, not at the next poll."""
        self._wake.set()

    def delay_after(self, attempts: int) -> float:
        index = min(attempts - 1, len(self.retry_delays) - 1)
        return self.retry_delays[max(index, 0)]

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                delivered_any = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: keep the worker alive
                log.exception("outbox pass failed")
                delivered_any = False
            if delivered_any:
                continue
            timeout = self.idle_poll
            with contextlib.suppress(Exception):
                due = await store_outbox.next_due(self.store)
                if due is not None:
                    timeout = max(0.0, min(timeout, due - self.clock.now()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def run_once(self) -> bool:
        """Claim and deliver one batch; True if there was anything to do."""
        now = self.clock.now()
        claimed = await store_outbox.claim_due(self.store, now, self.batch, self.lease)
        if not claimed:
            return False
        results = await asyncio.gather(*(self._deliver(m) for m in claimed))
        done = [m.id for m, ok in zip(claimed, results, strict=True) if ok]
        await store_outbox.mark_delivered(self.store, done, self.clock.now())
        return True

    async def _deliver(self, message: OutboxMessage) -> bool:
        sender = self.senders.get(message.kind)
        try:
            if sender is None:
                raise DeliveryError(f"no sender for kind {message.kind!r} in this process")
            await sender(message)
            if self.metrics is not None:
                self.metrics.deliveries.labels(message.kind).inc()
                lag = max(0.0, self.clock.now() - message.created_at)
                self.metrics.delivery_lag.labels(message.kind).observe(lag)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            now = self.clock.now()
            if self.metrics is not None:
                self.metrics.delivery_failures.labels(message.kind).inc()
            if message.attempts >= self.max_attempts:
                if self.metrics is not None:
                    self.metrics.given_up.labels(message.kind).inc()
                log.warning(
                    "giving up on outbox %s to %s: %s",
                    message.id,
                    safe(message.target),
                    safe(error),
                )
                await store_outbox.give_up(self.store, message.id, now, error)
            else:
                at = now + self.delay_after(message.attempts)
                await store_outbox.reschedule(self.store, message.id, at, error)
            return False
