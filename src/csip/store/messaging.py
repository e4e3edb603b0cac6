"""Persistence of the Messaging function set: functions taking the session of the caller's
unit of work (store.uow). TextMessages are never deleted (cancelled only); a group's
MessagingProgram goes with the group at a lab reset (foreign key cascade).

`MessagingStore` keeps one-transaction reads for read paths outside a unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.domain.der import Group
from csip.domain.devices import mint_mrid
from csip.domain.messaging import MessagingProgram, TextMessage
from csip.errors import NotFound
from csip.store.der import KIND_MESSAGING_PROGRAM, KIND_TEXT_MESSAGE
from csip.store.store import Store
from csip.store.tables_der import DerGroupRow
from csip.store.tables_messaging import MessagingProgramRow, TextMessageRow


def _program(row: MessagingProgramRow) -> MessagingProgram:
    assert row.id is not None
    return MessagingProgram(
        row.id, row.mrid, row.group_id, row.description, row.locale, row.primacy
    )


def _message(row: TextMessageRow) -> TextMessage:
    assert row.id is not None
    return TextMessage(
        id=row.id,
        mrid=row.mrid,
        program_id=row.program_id,
        creation_time=row.creation_time,
        start=row.start,
        duration=row.duration,
        text=row.text,
        priority=row.priority,
        originator=row.originator,
        cancelled_at=row.cancelled_at,
        source=row.source,
    )


#: TextMessageList order (IEEE 2030.5 §5.5 event lists): start ascending, then the newest
#: first (creationTime, then mRID, which is minted from the id).
_ORDER = (
    col(TextMessageRow.start),
    col(TextMessageRow.creation_time).desc(),
    col(TextMessageRow.id).desc(),
)


# ---- programs ----------------------------------------------------------------------------
async def select_messaging_program(s: AsyncSession, program_id: int) -> MessagingProgram | None:
    row = await s.get(MessagingProgramRow, program_id)
    return None if row is None else _program(row)


async def select_messaging_programs(
    s: AsyncSession, group_id: int | None = None
) -> list[MessagingProgram]:
    """In id order; a group has at most one."""
    query = select(MessagingProgramRow).order_by(col(MessagingProgramRow.id))
    if group_id is not None:
        query = query.where(col(MessagingProgramRow.group_id) == group_id)
    return [_program(r) for r in await s.scalars(query)]


async def select_group_for_update(s: AsyncSession, group_id: int) -> Group:
    """The live group, locked until commit (PostgreSQL; SQLite's unit of work holds the write
    lock already), so two units making its MessagingProgram at once take turns instead of
    one failing on the unique group."""
    query = select(DerGroupRow).where(col(DerGroupRow.id) == group_id).with_for_update()
    row = (await s.scalars(query)).first()
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no group {group_id}")
    assert row.id is not None
    return Group(row.id, row.mrid, row.description, row.level, row.parent_id, row.created_at)


async def insert_messaging_program(
    s: AsyncSession, group_id: int, description: str, locale: str, primacy: int, now: int, pen: int
) -> MessagingProgram:
    row = MessagingProgramRow(
        mrid="",
        group_id=group_id,
        description=description[:32],
        locale=locale,
        primacy=primacy,
        created_at=now,
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    row.mrid = mint_mrid((KIND_MESSAGING_PROGRAM << 80) | row.id, pen)
    await s.flush()
    return _program(row)


async def update_messaging_program(
    s: AsyncSession, program_id: int, locale: str | None, primacy: int | None
) -> MessagingProgram:
    row = await s.get(MessagingProgramRow, program_id)
    if row is None:
        raise NotFound(f"no MessagingProgram {program_id}")
    if locale is not None:
        row.locale = locale
    if primacy is not None:
        row.primacy = primacy
    row.version += 1
    await s.flush()
    return _program(row)


# ---- messages ----------------------------------------------------------------------------
async def insert_text_messages(
    s: AsyncSession, messages: Sequence[TextMessage], pen: int
) -> list[TextMessage]:
    """Insert messages (ids and mRIDs ignored, minted here): all in the caller's unit."""
    rows = [
        TextMessageRow(
            mrid="",
            program_id=m.program_id,
            creation_time=m.creation_time,
            start=m.start,
            duration=m.duration,
            text=m.text,
            priority=m.priority,
            originator=m.originator or None,
            source=m.source,
        )
        for m in messages
    ]
    s.add_all(rows)
    await s.flush()
    for row in rows:
        assert row.id is not None
        row.mrid = mint_mrid((KIND_TEXT_MESSAGE << 80) | row.id, pen)
    await s.flush()
    return [_message(r) for r in rows]


async def select_text_messages(s: AsyncSession, program_ids: Sequence[int]) -> list[TextMessage]:
    """Every message of these programs, history included, in TextMessageList order."""
    if not program_ids:
        return []
    query = (
        select(TextMessageRow)
        .where(col(TextMessageRow.program_id).in_(list(program_ids)))
        .order_by(*_ORDER)
    )
    return [_message(r) for r in await s.scalars(query)]


async def select_text_message(s: AsyncSession, message_id: int) -> TextMessage | None:
    row = await s.get(TextMessageRow, message_id)
    return None if row is None else _message(row)


async def select_text_messages_of_source(s: AsyncSession, source: str) -> list[TextMessage]:
    query = select(TextMessageRow).where(col(TextMessageRow.source) == source).order_by(*_ORDER)
    return [_message(r) for r in await s.scalars(query)]


async def update_text_messages_cancelled(
    s: AsyncSession, message_ids: Sequence[int], now: int
) -> list[TextMessage]:
    """Cancel those of the given messages not over and not cancelled yet; answers them."""
    changed = []
    for message_id in message_ids:
        row = await s.get(TextMessageRow, message_id)
        if row is None or row.cancelled_at is not None or row.start + row.duration <= now:
            continue
        row.cancelled_at = now
        changed.append(_message(row))
    await s.flush()
    return changed


class MessagingStore:
    """One-transaction reads for the read paths (render once: they run on a cache miss)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def programs(self, group_id: int | None = None) -> list[MessagingProgram]:
        async with self.store.transaction() as s:
            return await select_messaging_programs(s, group_id)

    async def program(self, program_id: int) -> MessagingProgram | None:
        async with self.store.transaction() as s:
            return await select_messaging_program(s, program_id)

    async def messages(self, program_ids: Sequence[int]) -> list[TextMessage]:
        if not program_ids:
            return []
        async with self.store.transaction() as s:
            return await select_text_messages(s, program_ids)
