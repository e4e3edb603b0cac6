"""Invalidation across workers: every committed unit of work reaches every worker, whole.

Each worker keeps its own render cache and client directory. A unit of work (store.uow)
writes its invalidation tags to one change-log row inside its transaction and, after
commit, applies them in its own worker (`committed`). On PostgreSQL the same transaction
sends a NOTIFY carrying only the row's sequence number (payloads are capped below 8,000
bytes; a bulk membership change of thousands of devices is far bigger); every other worker
reads the rows after the last one it applied, in order, and skips its own. A worker whose
listening connection dropped reconnects and replays from where it stopped; only if the rows
it missed were pruned meanwhile does it drop everything. SQLite serves from one process, but
the CLI writes the same file while it runs (`csip programs enroll`, `csip clients add`): the
server reads the change-log rows of other processes once a second (`SqliteBus`), so a cached
answer never outlives such a write by more than that.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from csip.store.uow import CHANNEL

log = logging.getLogger(__name__)

#: Delivered when changes may have been missed: drop everything.
EVERYTHING = "*"
Listener = Callable[[list[str]], None]

_SELECT_AFTER = "SELECT seq, origin, payload FROM change_log WHERE seq > $1 ORDER BY seq"
_SELECT_RANGE = "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM change_log"


class LocalBus:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        #: Names this worker's rows in the change log, so it never applies them twice.
        self.worker_id = secrets.token_hex(8)

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def deliver(self, tags: list[str]) -> None:
        for listener in self.listeners:
            listener(tags)

    def committed(self, seq: int | None, tags: list[str]) -> None:
        """A unit of work of this worker committed: apply its tags here, now."""
        if tags:
            self.deliver(tags)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PgBus(LocalBus):
    """LISTEN for sequence numbers, replay change-log rows in order (see the module doc)."""

    def __init__(self, dsn: str, reconnect_delay: float = 1.0, poll_interval: float = 5.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.reconnect_delay = reconnect_delay
        #: A replay also runs this often with no NOTIFY: a connection that died silently (no
        #: TCP reset, so no termination event) cannot leave this worker stale for long.
        self.poll_interval = poll_interval
        #: The highest sequence number applied (or skipped as this worker's own).
        self.last_seq = 0
        self._conn: Any = None
        self._stopping = False
        self._wanted = asyncio.Event()
        #: One query at a time on the connection (asyncpg refuses overlapping ones).
        self._lock = asyncio.Lock()
        self._replayer: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        #: Rows replayed and full drops since start (tests and the status page read them).
        self.replayed = 0
        self.dropped_all = 0

    async def start(self) -> None:
        await self._connect()
        _, self.last_seq = await self._conn.fetchrow(_SELECT_RANGE)
        self._replayer = asyncio.get_running_loop().create_task(self._replay_forever())

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if int(payload) > self.last_seq:
            self._wanted.set()

    def _on_lost(self, _conn: Any) -> None:
        if self._stopping or self._reconnect is not None:
            return
        log.warning("lost the change-log listener connection; reconnecting")
        self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        """Reconnect, then catch up from the last applied row (or drop all if pruned)."""
        try:
            while not self._stopping:
                try:
                    await self._connect()
                    break
                except OSError:
                    await asyncio.sleep(self.reconnect_delay)
                except Exception:  # asyncpg's own errors while the server restarts
                    log.exception("reconnecting the change-log listener")
                    await asyncio.sleep(self.reconnect_delay)
            if self._stopping:
                return
            async with self._lock:
                low, _high = await self._conn.fetchrow(_SELECT_RANGE)
            if low > self.last_seq + 1:
                # rows this worker never saw were pruned: nothing to replay them from
                self.dropped_all += 1
                self.deliver([EVERYTHING])
            self._wanted.set()
        finally:
            self._reconnect = None

    async def _replay_forever(self) -> None:
        while not self._stopping:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.poll_interval)
            self._wanted.clear()
            try:
                await self.replay()
            except Exception:  # the connection dropped mid-query: _relisten catches up
                if not self._stopping:
                    log.warning("change-log replay failed; retrying after reconnect")

    async def replay(self) -> None:
        """Apply every row after the last applied one, in order, skipping this worker's."""
        async with self._lock:
            rows = await self._conn.fetch(_SELECT_AFTER, self.last_seq)
        for seq, origin, payload in rows:
            if origin != self.worker_id:
                self.replayed += 1
                self.deliver([t for t in payload.split("\n") if t])
            self.last_seq = seq

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._replayer, self._reconnect):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if self._conn is not None:
            await self._conn.close()


class SqliteBus(LocalBus):
    """Reads the change-log rows other processes (the CLI) committed to the same SQLite file,
    every `poll_interval` seconds: one indexed query that finds nothing almost always."""

    def __init__(self, store: Any, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.store = store
        self.poll_interval = poll_interval
        self.last_seq = 0
        self.replayed = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from csip.store.uow import select_last_change_seq

        async with self.store.transaction() as s:
            self.last_seq = await select_last_change_seq(s)
        self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.replay()
            except Exception:  # a locked or busy file: the next tick tries again
                log.warning("reading the change log failed; retrying", exc_info=True)

    async def replay(self) -> None:
        from csip.store.uow import select_changes_after

        async with self.store.transaction() as s:
            rows = await select_changes_after(s, self.last_seq)
        for seq, origin, tags in rows:
            if origin != self.worker_id:
                self.replayed += 1
                self.deliver(tags)
            self.last_seq = seq

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... for a raw asyncpg connection."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
