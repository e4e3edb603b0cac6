"""What settlement reads: sites' metered power and who opted out of an event's controls."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.store.tables_der import DerResponseRow
from csip.store.tables_telemetry import MirrorMeterReadingRow, ReadingRow

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
