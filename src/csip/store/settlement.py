"""What settlement reads: sites' metered power and who opted out of an event's controls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.store.rows import select_tuples, stream_tuples
from csip.store.tables import EndDeviceRow
from csip.store.tables_der import DerGroupMemberRow, DerResponseRow
from csip.store.tables_telemetry import MirrorMeterReadingRow, MirrorUsagePointRow, ReadingRow

WATTS = 38  # sep.xsd UomType W
TOTAL = 0  # phase 0: not phase-specific (the site's total)


async def select_power_readings(
    s: AsyncSession, device_ids: Sequence[int], since: int, until: int
) -> dict[int, list[tuple[int, float]]]:
    """Per device, its total active power readings (W, phase 0) starting in [since, until),
    as (start, watts) with each reading's own multiplier applied."""
    found: dict[int, list[tuple[int, float]]] = {d: [] for d in device_ids}
    if not device_ids:
        return found
    query = (
        select(
            ReadingRow.end_device_id,
            ReadingRow.start,
            ReadingRow.value,
            ReadingRow.power_of_ten_multiplier,
        )
        .join(MirrorMeterReadingRow, col(MirrorMeterReadingRow.id) == col(ReadingRow.mmr_id))
        .where(
            col(ReadingRow.end_device_id).in_(device_ids),
            col(ReadingRow.start) >= since,
            col(ReadingRow.start) < until,
            col(MirrorMeterReadingRow.uom) == WATTS,
            (col(MirrorMeterReadingRow.phase).is_(None))
            | (col(MirrorMeterReadingRow.phase) == TOTAL),
        )
        .order_by(col(ReadingRow.end_device_id), col(ReadingRow.start))
    )
    for device_id, start, value, multiplier in (await s.execute(query)).all():
        found[device_id].append((int(start), float(value) * 10.0 ** int(multiplier)))
    return found


async def select_response_statuses(
    s: AsyncSession, control_ids: Sequence[int]
) -> dict[int, set[int]]:
    """Per device, every Response status it posted to these controls."""
    found: dict[int, set[int]] = {}
    if not control_ids:
        return found
    query = select(DerResponseRow.end_device_id, DerResponseRow.status).where(
        col(DerResponseRow.control_id).in_(control_ids)
    )
    for device_id, status in (await s.execute(query)).all():
        found.setdefault(int(device_id), set()).add(int(status))
    return found


# ---- a whole event's sites at once (services/settlement.py) -----------------------------------
def _members(group_ids: Iterable[int]) -> Any:
    return select(col(DerGroupMemberRow.end_device_id)).where(
        col(DerGroupMemberRow.group_id).in_(sorted(group_ids))
    )


def _meters(group_ids: Iterable[int]) -> Any:
    """The total-W MirrorMeterReadings (uom W, phase 0 or none) of the groups' devices."""
    return (
        select(
            col(MirrorMeterReadingRow.id).label("mmr_id"),
            col(MirrorUsagePointRow.end_device_id).label("end_device_id"),
        )
        .join(MirrorUsagePointRow, col(MirrorUsagePointRow.id) == col(MirrorMeterReadingRow.mup_id))
        .where(
            col(MirrorUsagePointRow.end_device_id).in_(_members(group_ids)),
            col(MirrorMeterReadingRow.uom) == WATTS,
            (col(MirrorMeterReadingRow.phase).is_(None))
            | (col(MirrorMeterReadingRow.phase) == TOTAL),
        )
    )


async def select_sites(s: AsyncSession, group_ids: Iterable[int]) -> list[tuple[int, str]]:
    """(id, lFDI) of every EndDevice directly in any of these groups, in id order."""
    query = (
        select(col(EndDeviceRow.id), col(EndDeviceRow.lfdi))
        .where(col(EndDeviceRow.id).in_(_members(group_ids)))
        .order_by(col(EndDeviceRow.id))
    )
    return [(int(i), str(lfdi)) for i, lfdi in await select_tuples(s, query)]


async def select_power_meters(
    s: AsyncSession, group_ids: Iterable[int], since: int, until: int
) -> list[tuple[int, int, int | None]]:
    """(device, meter, start of its first reading in [since, until) or None) for each total-W
    MirrorMeterReading of the groups' devices: one index seek per meter."""
    meters = _meters(group_ids).subquery()
    first = (
        select(col(ReadingRow.start))
        .where(
            col(ReadingRow.mmr_id) == meters.c.mmr_id,
            col(ReadingRow.start) >= since,
            col(ReadingRow.start) < until,
        )
        .order_by(col(ReadingRow.start))
        .limit(1)
        .scalar_subquery()
    )
    query = select(meters.c.end_device_id, meters.c.mmr_id, first).order_by(meters.c.mmr_id)
    return [
        (int(d), int(m), None if f is None else int(f)) for d, m, f in await select_tuples(s, query)
    ]


async def stream_power_readings(
    s: AsyncSession, group_ids: Iterable[int], low: int, high: int
) -> AsyncIterator[list[tuple[int, int, int, int]]]:
    """The readings (meter, start, value, powerOfTenMultiplier) of the groups' total-W meters
    starting in [low, high), in (meter, start) order, in chunks: each meter's run is read
    along its (mmr_id, start) index, never the whole table."""
    meters = _meters(group_ids).subquery()
    query = (
        select(
            col(ReadingRow.mmr_id),
            col(ReadingRow.start),
            col(ReadingRow.value),
            col(ReadingRow.power_of_ten_multiplier),
        )
        .where(
            col(ReadingRow.mmr_id).in_(select(meters.c.mmr_id)),
            col(ReadingRow.start) >= low,
            col(ReadingRow.start) < high,
        )
        .order_by(col(ReadingRow.mmr_id), col(ReadingRow.start))
    )
    async for chunk in stream_tuples(s, query):
        yield chunk
