"""One unit of work per use case: one transaction, and the changes it made, said once.

A service writes like this::

    async with changes.unit_of_work() as tx:      # services/changes.py hands the effects in
        group = await der.insert_group(tx.session, ...)
        tx.record(GroupCreated(group.id))

The store functions take the session and never decide what a change means for caches or
subscribers. When the block ends without an exception, `effects.prepare(tx)` turns the recorded
changes into notification intents (outbox rows) and invalidation tags *inside the same
transaction*; the tags go into one change-log row (and, on PostgreSQL, a NOTIFY carrying only
its sequence number); then the transaction commits and `effects.committed(...)` drops this
worker's cached bytes and wakes the outbox. An exception anywhere rolls all of it back: the
change, the intents and the log row (a request commits whole or changes nothing).

On SQLite a unit takes the write lock up front (BEGIN IMMEDIATE): a unit that reads, then
writes, would otherwise fail with SQLITE_BUSY_SNAPSHOT when another writer committed between
its read and its write; waiting for the lock (busy_timeout) is what we want instead. Within
one process the units take turns on an asyncio lock first (`Store.write_turn`): SQLite admits
one writer at a time anyway, and a fleet registering at once would otherwise outwait
busy_timeout and fail with "database is locked".
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from csip.store.tables_changes import ChangeLogRow

if TYPE_CHECKING:
    from csip.store.store import Store

#: The PostgreSQL channel; the payload is the change-log sequence number, nothing else.
CHANNEL = "csip_changes"
#: Held from the change-log insert to commit, so sequence numbers become visible in order
#: (a reader that saw seq N has seen every committed seq below N): no gap bookkeeping.
_LOG_LOCK = 0x63_73_69_70  # "csip"
#: Rows older than this are pruned; a worker that lost its listener for longer drops all.
KEEP_SECONDS = 3600.0
#: session.info key: outbox rows enqueued in this transaction (store.outbox.enqueue counts).
OUTBOX_ROWS = "csip_outbox_rows"
#: Prune once every this many log rows (cheap, and never on the hot read path).
PRUNE_EVERY = 256


@dataclass
class UnitOfWork:
    """The session of one use case and the typed changes it recorded."""

    session: AsyncSession
    changes: list[object] = field(default_factory=list)

    def record(self, *changes: object) -> None:
        self.changes.extend(changes)


class Effects(Protocol):
    """What the changes mean (services/changes.py): the one place that decides it."""

    @property
    def worker_id(self) -> str: ...

    async def prepare(self, tx: UnitOfWork) -> list[str]:
        """Inside the transaction: write notification intents; answer invalidation tags."""
        ...

    def committed(self, seq: int | None, tags: list[str], notified: bool) -> None:
        """After commit: apply the tags in this worker, wake the outbox if it has work."""
        ...


@dataclass
class _Outcome:
    seq: int | None = None
    tags: list[str] = field(default_factory=list)


async def insert_change(session: AsyncSession, origin: str, tags: Sequence[str]) -> int:
    """Append one change-log row (and NOTIFY its number on PostgreSQL) in this transaction."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        await session.execute(select(func.pg_advisory_xact_lock(_LOG_LOCK)))
    row = ChangeLogRow(origin=origin, created_at=time.time(), payload="\n".join(tags))
    session.add(row)
    await session.flush()
    assert row.seq is not None
    if postgres:
        await session.execute(select(func.pg_notify(CHANNEL, str(row.seq))))
    if row.seq % PRUNE_EVERY == 0:
        await delete_changes_before(session, time.time() - KEEP_SECONDS)
    return row.seq


async def delete_changes_before(session: AsyncSession, created_before: float) -> None:
    await session.execute(delete(ChangeLogRow).where(col(ChangeLogRow.created_at) < created_before))


async def select_changes_after(session: AsyncSession, seq: int) -> list[tuple[int, str, list[str]]]:
    """(seq, origin, tags) of every row after `seq`, in order."""
    rows = await session.scalars(
        select(ChangeLogRow).where(col(ChangeLogRow.seq) > seq).order_by(col(ChangeLogRow.seq))
    )
    return [(r.seq or 0, r.origin, [t for t in r.payload.split("\n") if t]) for r in rows]


async def select_last_change_seq(session: AsyncSession) -> int:
    last = await session.scalar(select(func.max(col(ChangeLogRow.seq))))
    return int(last or 0)


@asynccontextmanager
async def unit_of_work(store: Store, effects: Effects) -> AsyncIterator[UnitOfWork]:
    """One transaction for one use case; see the module docstring."""
    outcome = _Outcome()
    async with store.write_turn(), store.sessions() as session:
        async with session.begin():
            if store.dialect == "sqlite":
                await session.execute(text("BEGIN IMMEDIATE"))
            tx = UnitOfWork(session)
            yield tx
            if tx.changes:
                outcome.tags = await effects.prepare(tx)
                if outcome.tags:
                    outcome.seq = await insert_change(session, effects.worker_id, outcome.tags)
        notified = bool(session.info.get(OUTBOX_ROWS))
    if tx.changes or notified:
        effects.committed(outcome.seq, outcome.tags, notified)
