"""Persistence of what devices post under their DER: documents with their times, LogEvents.

Every method is one transaction: it commits whole or changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, delete, select

from csip.domain.der_device import LogEvent
from csip.errors import NotFound
from csip.store.store import Store
from csip.store.tables import DeviceDocumentRow, EndDeviceRow
from csip.store.tables_der_device import LogEventRow


@dataclass(frozen=True, slots=True)
class StoredDocument:
    kind: str
    xml: bytes
    updated_at: int


def _log_event(row: LogEventRow) -> LogEvent:
    assert row.id is not None
    return LogEvent(
        id=row.id,
        end_device_id=row.end_device_id,
        created_date_time=row.created_date_time,
        log_event_id=row.log_event_id,
        log_event_code=row.log_event_code,
        function_set=row.function_set,
        profile_id=row.profile_id,
        log_event_pen=row.log_event_pen,
        received_at=row.received_at,
        xml=bytes(row.xml),
    )


async def insert_log_event(
    s: AsyncSession, event: LogEvent, render: Callable[[str], bytes], keep: int
) -> LogEvent:
    """Insert one LogEvent; `render(href)` gives its XML once its id (href) is known.

    The device keeps its newest `keep` events: older ones (list order) go in the same
    transaction.
    """
    if await s.get(EndDeviceRow, event.end_device_id) is None:
        raise NotFound(f"EndDevice {event.end_device_id} does not exist")
    row = LogEventRow(
        end_device_id=event.end_device_id,
        created_date_time=event.created_date_time,
        log_event_id=event.log_event_id,
        log_event_code=event.log_event_code,
        function_set=event.function_set,
        profile_id=event.profile_id,
        log_event_pen=event.log_event_pen,
        received_at=event.received_at,
        xml=b"",
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    row.xml = render(f"/edev/{event.end_device_id}/lel/{row.id}")
    await s.flush()
    mine = col(LogEventRow.end_device_id) == event.end_device_id
    count = select(func.count()).select_from(LogEventRow).where(mine)
    excess = int((await s.execute(count)).scalar_one()) - keep
    if excess > 0:
        oldest = (
            select(LogEventRow.id)
            .where(mine, col(LogEventRow.id) != row.id)  # never the one just posted
            .order_by(
                col(LogEventRow.created_date_time),
                col(LogEventRow.log_event_id),
                col(LogEventRow.id),
            )
            .limit(excess)
        )
        ids = list((await s.execute(oldest)).scalars())
        await s.execute(delete(LogEventRow).where(col(LogEventRow.id).in_(ids)))
    return _log_event(row)


class DerDeviceStore:
    """DER documents and LogEvents of EndDevices, on the engine of the foundation's Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def documents(self, device_id: int, kinds: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents of these kinds (absent ones are left out)."""
        async with self.store.transaction() as s:
            rows = await s.scalars(
                select(DeviceDocumentRow).where(
                    col(DeviceDocumentRow.end_device_id) == device_id,
                    col(DeviceDocumentRow.kind).in_(list(kinds)),
                )
            )
            return {r.kind: StoredDocument(r.kind, bytes(r.xml), r.updated_at) for r in rows}

    async def add_log_event(
        self, event: LogEvent, render: Callable[[str], bytes], keep: int
    ) -> LogEvent:
        async with self.store.transaction() as s:
            return await insert_log_event(s, event, render, keep)

    async def get_log_event(self, device_id: int, event_id: int) -> LogEvent | None:
        async with self.store.transaction() as s:
            row = await s.get(LogEventRow, event_id)
            if row is None or row.end_device_id != device_id:
                return None
            return _log_event(row)

    async def page_log_events(
        self, device_id: int, *, start: int = 0, limit: int = 1, after: int | None = None
    ) -> tuple[int, list[LogEvent]]:
        """(all, page) newest first: createdDateTime, then logEventID, then arrival, descending.

        `after` (2030.5 query parameter a) keeps the events created at or after that time.
        """
        conditions = [col(LogEventRow.end_device_id) == device_id]
        if after is not None:
            conditions.append(col(LogEventRow.created_date_time) >= after)
        async with self.store.transaction() as s:
            count = select(func.count()).select_from(LogEventRow).where(*conditions)
            total = int((await s.execute(count)).scalar_one())
            if not limit:
                return total, []
            rows = await s.scalars(
                select(LogEventRow)
                .where(*conditions)
                .order_by(
                    col(LogEventRow.created_date_time).desc(),
                    col(LogEventRow.log_event_id).desc(),
                    col(LogEventRow.id).desc(),
                )
                .offset(start)
                .limit(limit)
            )
            return total, [_log_event(r) for r in rows]
