"""Reads the console's pages need and no other path does: per-device summaries in bulk
(documents, LogEvent counts, when each device last posted) and an OpenADR program's event
history including deleted events (the timeline shows them as cancelled)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from csip.store.openadr import StoredObject, _object
from csip.store.tables import DeviceDocumentRow
from csip.store.tables_der_device import LogEventRow
from csip.store.tables_openadr import OadrObjectRow
from csip.store.tables_outbox import OutboxRow


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    ordered = list(ids)
    return [ordered[i : i + 500] for i in range(0, len(ordered), 500)]


async def select_documents(
    s: AsyncSession, device_ids: Sequence[int], kind: str
) -> dict[int, bytes]:
    """device id -> its document of `kind` (the part name, e.g. "di", "dercap")."""
    found: dict[int, bytes] = {}
    for chunk in _chunks(device_ids):
        query = select(col(DeviceDocumentRow.end_device_id), col(DeviceDocumentRow.xml)).where(
            col(DeviceDocumentRow.kind) == kind, col(DeviceDocumentRow.end_device_id).in_(chunk)
        )
        for device_id, xml in (await s.execute(query)).all():
            found[int(device_id)] = bytes(xml)
    return found


async def select_document_times(s: AsyncSession, device_ids: Sequence[int]) -> dict[int, int]:
    """device id -> when it last PUT any document under its EndDevice."""
    found: dict[int, int] = {}
    for chunk in _chunks(device_ids):
        query = (
            select(
                col(DeviceDocumentRow.end_device_id), func.max(col(DeviceDocumentRow.updated_at))
            )
            .where(col(DeviceDocumentRow.end_device_id).in_(chunk))
            .group_by(col(DeviceDocumentRow.end_device_id))
        )
        for device_id, at in (await s.execute(query)).all():
            found[int(device_id)] = int(at)
    return found


async def count_log_events(s: AsyncSession, device_ids: Sequence[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for chunk in _chunks(device_ids):
        query = (
            select(col(LogEventRow.end_device_id), func.count())
            .where(col(LogEventRow.end_device_id).in_(chunk))
            .group_by(col(LogEventRow.end_device_id))
        )
        for device_id, count in (await s.execute(query)).all():
            found[int(device_id)] = int(count)
    return found


async def select_event_history(s: AsyncSession, program_id: str) -> list[StoredObject]:
    """Every event of an OpenADR program, deleted ones too (deleted_at set), oldest first."""
    query = (
        select(OadrObjectRow)
        .where(col(OadrObjectRow.kind) == "EVENT", col(OadrObjectRow.program_id) == program_id)
        .order_by(col(OadrObjectRow.seq))
    )
    return [_object(r) for r in await s.scalars(query)]


async def select_outbox_summary(s: AsyncSession) -> list[tuple[str, int, int, int]]:
    """Per kind (webhook, mqtt, sep2): (kind, waiting, retrying, given up). Delivered rows
    are not counted: they are history."""
    waiting = func.sum(
        case(
            (col(OutboxRow.delivered_at).is_(None) & col(OutboxRow.failed_at).is_(None), 1), else_=0
        )
    )
    retrying = func.sum(
        case(
            (
                col(OutboxRow.delivered_at).is_(None)
                & col(OutboxRow.failed_at).is_(None)
                & (col(OutboxRow.attempts) > 0),
                1,
            ),
            else_=0,
        )
    )
    failed = func.sum(case((col(OutboxRow.failed_at).is_not(None), 1), else_=0))
    query = (
        select(col(OutboxRow.kind), waiting, retrying, failed)
        .group_by(col(OutboxRow.kind))
        .order_by(col(OutboxRow.kind))
    )
    return [
        (str(k), int(w or 0), int(r or 0), int(f or 0))
        for k, w, r, f in (await s.execute(query)).all()
    ]


async def select_outbox_failures(
    s: AsyncSession, limit: int = 20
) -> list[tuple[str, str, int, str]]:
    """The newest given-up or failing deliveries: (kind, target, attempts, last error)."""
    query = (
        select(
            col(OutboxRow.kind),
            col(OutboxRow.target),
            col(OutboxRow.attempts),
            col(OutboxRow.last_error),
        )
        .where(col(OutboxRow.last_error).is_not(None), col(OutboxRow.delivered_at).is_(None))
        .order_by(col(OutboxRow.id).desc())
        .limit(limit)
    )
    return [(str(k), str(t), int(a), str(e)) for k, t, a, e in (await s.execute(query)).all()]


async def select_event(s: AsyncSession, event_id: str) -> StoredObject | None:
    """One event, deleted or not (the console shows what a cancelled event was)."""
    query = select(OadrObjectRow).where(
        col(OadrObjectRow.kind) == "EVENT", col(OadrObjectRow.id) == event_id
    )
    row = (await s.scalars(query)).first()
    return None if row is None else _object(row)
