"""Invalidation across workers: local by default, PostgreSQL LISTEN/NOTIFY when shared.

Every worker keeps its own render cache and client directory; a write publishes the tags it
changed, every worker (this one included) drops them. On PostgreSQL the tags travel as a
NOTIFY on one channel; SQLite is single-host, single-process, so local delivery suffices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "csip_invalidate"
#: Delivered when notifications may have been missed: drop everything.
EVERYTHING = "*"
Listener = Callable[[list[str]], None]


class LocalBus:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def deliver(self, tags: list[str]) -> None:
        for listener in self.listeners:
            listener(tags)

    async def publish(self, tags: Iterable[str]) -> None:
        self.deliver(list(tags))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PgBus(LocalBus):
    """NOTIFY on publish, LISTEN in the background.

    If the listening connection drops, notifications may have been missed: every cache is
    dropped and the listener reconnects.
    """

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self._listen_conn: Any = None
        self._send_conn: Any = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self._reconnect: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import asyncpg

        await self._listen()
        self._send_conn = await asyncpg.connect(self.dsn)

    async def _listen(self) -> None:
        import asyncpg

        self._listen_conn = await asyncpg.connect(self.dsn)
        await self._listen_conn.add_listener(CHANNEL, self._on_notify)
        self._listen_conn.add_termination_listener(self._on_lost)

    def _on_lost(self, _conn: Any) -> None:
        if self._stopping:
            return
        self.deliver([EVERYTHING])
        self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
                self.deliver([EVERYTHING])
                return
            except OSError:
                await asyncio.sleep(1.0)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.deliver([t for t in payload.split("\n") if t])

    async def publish(self, tags: Iterable[str]) -> None:
        tag_list = list(tags)
        self.deliver(tag_list)
        payload = "\n".join(tag_list)
        async with self._lock:
            try:
                await self._send_conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except Exception:  # this worker is right; others learn when their listener reconnects
                log.exception("could not NOTIFY other workers")

    async def stop(self) -> None:
        self._stopping = True
        for conn in (self._listen_conn, self._send_conn):
            if conn is not None:
                await conn.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... for a raw asyncpg connection."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
