"""Outbox persistence: enqueue inside the writer's transaction, claim due rows, settle them.

Claiming sets a lease (``next_attempt_at`` moved past the delivery window) and counts the
attempt in one short transaction, so a worker that dies mid-delivery (SIGKILL) leaves rows
that become due again when the lease runs out, and several workers sharing PostgreSQL never
deliver the same row at once (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.store.store import Store
from csip.store.tables_outbox import OutboxRow

#: The session type store modules hand to services inside ``Store.transaction()`` blocks.
Session = AsyncSession


@dataclass(frozen=True)
class OutboxMessage:
    """A message to deliver; ``id`` and ``attempts`` are filled when read back."""

    kind: str
    target: str
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    id: int = 0
    attempts: int = 0
    created_at: float = 0.0


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    delivered: int
    failed: int


def _message(row: OutboxRow) -> OutboxMessage:
    assert row.id is not None
    return OutboxMessage(
        kind=row.kind,
        target=row.target,
        body=bytes(row.body),
        content_type=row.content_type,
        headers=json.loads(row.headers),
        id=row.id,
        attempts=row.attempts,
        created_at=row.created_at,
    )


async def enqueue(session: Session, messages: Sequence[OutboxMessage], now: float) -> int:
    """Add messages in the caller's transaction: they commit (or vanish) with its change.

    One multi-row INSERT, not an ORM object per row: a control reaching 10,000 subscribers
    writes 10,000 rows inside the admin's request.
    """
    if not messages:
        return 0
    # the unit of work wakes the outbox after commit when this is set (store.uow)
    session.info["csip_outbox_rows"] = session.info.get("csip_outbox_rows", 0) + len(messages)
    rows = [
        {
            "kind": m.kind,
            "target": m.target,
            "headers": json.dumps(m.headers),
            "body": m.body,
            "content_type": m.content_type,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for m in messages
    ]
    await session.execute(insert(OutboxRow), rows)
    return len(messages)


async def claim_due(store: Store, now: float, limit: int, lease: float) -> list[OutboxMessage]:
    """Take up to ``limit`` due rows for delivery, leasing them for ``lease`` seconds."""
    async with store.transaction() as s:
        query = (
            select(OutboxRow)
            .where(
                col(OutboxRow.delivered_at).is_(None),
                col(OutboxRow.failed_at).is_(None),
                col(OutboxRow.next_attempt_at) <= now,
            )
            .order_by(col(OutboxRow.next_attempt_at), col(OutboxRow.id))
            .limit(limit)
        )
        if store.dialect == "postgresql":
            rows = list(await s.scalars(query.with_for_update(skip_locked=True)))
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + lease
            await s.flush()
            return [_message(r) for r in rows]
        # SQLite has no row locks, but one UPDATE ... WHERE id IN (due rows) RETURNING runs
        # under its write lock: even two processes on one file never take the same row.
        due = query.with_only_columns(col(OutboxRow.id)).scalar_subquery()
        claim = (
            update(OutboxRow)
            .where(col(OutboxRow.id).in_(due))
            .values(attempts=OutboxRow.attempts + 1, next_attempt_at=now + lease)
            .returning(OutboxRow)
            .execution_options(synchronize_session=False)
        )
        rows = list(await s.scalars(claim))
        rows.sort(key=lambda r: (r.next_attempt_at, r.id or 0))
        return [_message(r) for r in rows]


async def next_due(store: Store) -> float | None:
    """When the earliest pending row becomes due (None: nothing pending)."""
    async with store.transaction() as s:
        query = select(func.min(OutboxRow.next_attempt_at)).where(
            col(OutboxRow.delivered_at).is_(None), col(OutboxRow.failed_at).is_(None)
        )
        value = (await s.execute(query)).scalar_one_or_none()
        return None if value is None else float(value)


async def mark_delivered(store: Store, ids: Sequence[int], now: float) -> None:
    if not ids:
        return
    async with store.transaction() as s:
        await s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id).in_(list(ids)))
            .values(delivered_at=now, last_error=None)
        )


async def reschedule(store: Store, message_id: int, at: float, error: str) -> None:
    async with store.transaction() as s:
        await s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id) == message_id)
            .values(next_attempt_at=at, last_error=error[:2000])
        )


async def give_up(store: Store, message_id: int, now: float, error: str) -> None:
    async with store.transaction() as s:
        await s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id) == message_id)
            .values(failed_at=now, last_error=error[:2000])
        )


async def counts(store: Store) -> OutboxCounts:
    async with store.transaction() as s:
        delivered = col(OutboxRow.delivered_at).is_not(None)
        failed = col(OutboxRow.failed_at).is_not(None)
        total = (await s.execute(select(func.count()).select_from(OutboxRow))).scalar_one()
        n_delivered = (
            await s.execute(select(func.count()).select_from(OutboxRow).where(delivered))
        ).scalar_one()
        n_failed = (
            await s.execute(select(func.count()).select_from(OutboxRow).where(failed))
        ).scalar_one()
    return OutboxCounts(int(total - n_delivered - n_failed), int(n_delivered), int(n_failed))


async def backlog(store: Store) -> dict[str, tuple[int, float]]:
    """kind -> (messages pending, created_at of the oldest): the outbox's depth and lag, in
    one grouped query (read at every /metrics scrape)."""
    async with store.transaction() as s:
        query = (
            select(OutboxRow.kind, func.count(), func.min(OutboxRow.created_at))
            .where(col(OutboxRow.delivered_at).is_(None), col(OutboxRow.failed_at).is_(None))
            .group_by(col(OutboxRow.kind))
        )
        rows = (await s.execute(query)).all()
    return {str(kind): (int(n), float(oldest)) for kind, n, oldest in rows}


async def messages(store: Store, kind: str | None = None) -> list[tuple[OutboxMessage, str]]:
    """Every row with its state (pending, delivered, failed), oldest first (tests, admin)."""
    async with store.transaction() as s:
        query = select(OutboxRow).order_by(col(OutboxRow.id))
        if kind is not None:
            query = query.where(col(OutboxRow.kind) == kind)
        result = []
        for row in await s.scalars(query):
            state = "delivered" if row.delivered_at else "failed" if row.failed_at else "pending"
            result.append((_message(row), state))
        return result
