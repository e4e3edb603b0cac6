"""Store functions of the program engine's reports: the claim row and what the report is
computed from (answers to the event's controls, group members, mirrored readings).

Everything runs inside the caller's unit of work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.domain.answers import Answer
from csip.domain.report_requests import UOM_PERCENT, UOM_W, RawReading
from csip.store.tables_der import DerGroupMemberRow, DerResponseRow
from csip.store.tables_dispatch import DispatchControlRow
from csip.store.tables_engine import EngineControlRow, EngineMappingRow
from csip.store.tables_engine_reports import EngineReportRow
from csip.store.tables_telemetry import MirrorMeterReadingRow, MirrorUsagePointRow, ReadingRow

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ReportClaim:
    """The claimed row of one event's report (locked until the unit of work ends)."""

    event_id: str
    report_id: str | None
    digest: str


async def claim_report(s: AsyncSession, event_id: str) -> ReportClaim | None:
    """Create the event's row if missing and lock it. None: another worker holds it now
    (PostgreSQL, SKIP LOCKED), so this one leaves the update to it. SQLite has one writer
    at a time (BEGIN IMMEDIATE), which is the claim there."""
    postgres = s.get_bind().dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    await s.execute(
        insert(EngineReportRow)
        .values(event_id=event_id, report_id=None, digest="", updated_at=0)
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    query = select(EngineReportRow).where(col(EngineReportRow.event_id) == event_id)
    if postgres:
        query = query.with_for_update(skip_locked=True)
    row = (await s.scalars(query)).first()
    if row is None:
        return None
    return ReportClaim(row.event_id, row.report_id, row.digest)


async def update_report(
    s: AsyncSession, event_id: str, report_id: str | None, digest: str, now: int
) -> None:
    row = await s.get(EngineReportRow, event_id)
    assert row is not None, "claim_report first"
    row.report_id = report_id
    row.digest = digest
    row.updated_at = now
    await s.flush()


async def select_reached_groups(s: AsyncSession, event_id: str) -> list[int]:
    """The groups the event reached (the engine's mapping rows: one per planned group)."""
    query = (
        select(EngineMappingRow.group_id)
        .where(col(EngineMappingRow.event_id) == event_id)
        .order_by(col(EngineMappingRow.group_id))
    )
    return [int(g) for g in await s.scalars(query)]


async def select_answers(s: AsyncSession, event_id: str) -> list[Answer]:
    """Every DERControlResponse to a control the event produced, with the intervals that
    control carries (a superseded control's answers still count for its intervals): the
    groups' controls (the engine's) and, in a per-device program, each device's own
    (dispatch_control)."""
    found: list[Answer] = []
    for link in (EngineControlRow, DispatchControlRow):
        query = (
            sa_select(
                col(DerResponseRow.end_device_id),
                col(link.interval_ids),
                col(DerResponseRow.status),
                col(DerResponseRow.created_date_time),
            )
            .join(link, col(link.control_id) == col(DerResponseRow.control_id))
            .where(col(link.event_id) == event_id)
        )
        found += [
            Answer(int(device), tuple(json.loads(intervals)), int(status), int(at))
            for device, intervals, status, at in (await s.execute(query)).all()
        ]
    return found


async def select_members(s: AsyncSession, group_ids: Iterable[int]) -> dict[int, set[int]]:
    """group id -> the devices directly in it."""
    ids = sorted(set(group_ids))
    found: dict[int, set[int]] = {g: set() for g in ids}
    for i in range(0, len(ids), _CHUNK):
        query = select(DerGroupMemberRow).where(
            col(DerGroupMemberRow.group_id).in_(ids[i : i + _CHUNK])
        )
        for row in await s.scalars(query):
            found[row.group_id].add(row.end_device_id)
    return found


async def select_power_and_charge(
    s: AsyncSession, device_ids: Sequence[int], since: int, until: int
) -> list[RawReading]:
    """The devices' readings in W or % (state of charge) with start in [since, until)."""
    ids = sorted(set(device_ids))
    found: list[RawReading] = []
    for i in range(0, len(ids), _CHUNK):
        query = (
            sa_select(
                col(ReadingRow.end_device_id),
                col(MirrorUsagePointRow.role_flags),
                col(MirrorMeterReadingRow.uom),
                col(MirrorMeterReadingRow.phase),
                col(MirrorMeterReadingRow.data_qualifier),
                col(ReadingRow.value),
                col(ReadingRow.power_of_ten_multiplier),
                col(ReadingRow.start),
            )
            .join(MirrorMeterReadingRow, col(MirrorMeterReadingRow.id) == col(ReadingRow.mmr_id))
            .join(
                MirrorUsagePointRow,
                col(MirrorUsagePointRow.id) == col(MirrorMeterReadingRow.mup_id),
            )
            .where(
                col(ReadingRow.end_device_id).in_(ids[i : i + _CHUNK]),
                col(ReadingRow.start) >= since,
                col(ReadingRow.start) < until,
                col(MirrorMeterReadingRow.uom).in_([UOM_W, UOM_PERCENT]),
            )
        )
        for device, role, uom, phase, qualifier, value, mult, start in (
            await s.execute(query)
        ).all():
            found.append(
                RawReading(
                    int(device),
                    int(role),
                    int(uom),
                    None if phase is None else int(phase),
                    None if qualifier is None else int(qualifier),
                    int(value),
                    int(mult),
                    int(start),
                )
            )
    return found
