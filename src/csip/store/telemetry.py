"""Persistence of the metering mirror on the foundation's engine.

Every public method is one transaction: a POST of a MirrorUsagePoint or of readings either
stores all of it or, when any part is refused, nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import and_, delete, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.domain.devices import EndDevice
from csip.domain.telemetry import (
    MeterReadingDraft,
    MirrorMeterReading,
    MirrorUsagePoint,
    Reading,
    ReadingType,
    StoredReading,
    UsagePointDraft,
    check_readings,
)
from csip.errors import Conflict, InvalidValues, NotFound
from csip.store.store import Store, _end_device
from csip.store.tables import EndDeviceRow
from csip.store.tables_telemetry import MirrorMeterReadingRow, MirrorUsagePointRow, ReadingRow


def _reading_type(row: MirrorMeterReadingRow) -> ReadingType:
    return ReadingType(
        uom=row.uom,
        power_of_ten_multiplier=row.power_of_ten_multiplier,
        kind=row.kind,
        phase=row.phase,
        flow_direction=row.flow_direction,
        data_qualifier=row.data_qualifier,
        accumulation_behaviour=row.accumulation_behaviour,
        commodity=row.commodity,
        interval_length=row.interval_length,
    )


def _meter_reading(row: MirrorMeterReadingRow) -> MirrorMeterReading:
    assert row.id is not None
    return MirrorMeterReading(row.id, row.mrid, row.description, _reading_type(row))


def _set_reading_type(row: MirrorMeterReadingRow, rt: ReadingType) -> None:
    row.uom = rt.uom
    row.power_of_ten_multiplier = rt.power_of_ten_multiplier
    row.kind = rt.kind
    row.phase = rt.phase
    row.flow_direction = rt.flow_direction
    row.data_qualifier = rt.data_qualifier
    row.accumulation_behaviour = rt.accumulation_behaviour
    row.commodity = rt.commodity
    row.interval_length = rt.interval_length


@dataclass(frozen=True, slots=True)
class WriteResult:
    mup: MirrorUsagePoint
    created: bool
    readings_stored: int


class TelemetryStore:
    """MirrorUsagePoints, MirrorMeterReadings and Readings of EndDevices."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- reads ------------------------------------------------------------------
    async def _load(
        self, s: AsyncSession, rows: Sequence[MirrorUsagePointRow], lfdis: dict[int, str]
    ) -> list[MirrorUsagePoint]:
        """Domain objects with their MirrorMeterReadings (one query for all of them)."""
        ids = [r.id for r in rows if r.id is not None]
        readings: dict[int, list[MirrorMeterReading]] = {i: [] for i in ids}
        if ids:
            mmrs = await s.scalars(
                select(MirrorMeterReadingRow)
                .where(col(MirrorMeterReadingRow.mup_id).in_(ids))
                .order_by(col(MirrorMeterReadingRow.id))
            )
            for mmr in mmrs:
                readings[mmr.mup_id].append(_meter_reading(mmr))
        result = []
        for row in rows:
            assert row.id is not None
            result.append(
                MirrorUsagePoint(
                    id=row.id,
                    end_device_id=row.end_device_id,
                    device_lfdi=lfdis[row.end_device_id],
                    mrid=row.mrid,
                    description=row.description,
                    role_flags=row.role_flags,
                    service_category_kind=row.service_category_kind,
                    status=row.status,
                    requested_post_rate=row.requested_post_rate,
                    meter_readings=tuple(readings[row.id]),
                )
            )
        return result

    async def get(self, mup_id: int) -> tuple[MirrorUsagePoint, EndDevice] | None:
        """The MirrorUsagePoint and the EndDevice it mirrors (for access control)."""
        async with self.store.transaction() as s:
            row = await s.get(MirrorUsagePointRow, mup_id)
            if row is None:
                return None
            device = await s.get(EndDeviceRow, row.end_device_id)
            if device is None:
                return None
            (mup,) = await self._load(s, [row], {row.end_device_id: device.lfdi})
            return mup, _end_device(device)

    async def page(
        self,
        *,
        lfdi: str | None = None,
        aggregator_id: int | None = None,
        device_id: int | None = None,
        start: int = 0,
        limit: int = 100,
    ) -> tuple[int, list[tuple[MirrorUsagePoint, EndDevice]]]:
        """(all, page) of the MirrorUsagePoints of the devices one client reaches (the same
        scope as its EndDeviceList), oldest first; device_id alone: that device's."""
        conditions = []
        if aggregator_id is not None:
            conditions.append(col(EndDeviceRow.aggregator_id) == aggregator_id)
        if lfdi is not None:
            conditions.append(col(EndDeviceRow.lfdi) == lfdi)
        if device_id is not None:
            conditions.append(col(EndDeviceRow.id) == device_id)
        join = col(MirrorUsagePointRow.end_device_id) == col(EndDeviceRow.id)
        async with self.store.transaction() as s:
            count_q = select(func.count()).select_from(MirrorUsagePointRow).join(EndDeviceRow, join)
            page_q = (
                select(MirrorUsagePointRow, EndDeviceRow)
                .join(EndDeviceRow, join)
                .order_by(col(MirrorUsagePointRow.id))
            )
            if conditions:
                count_q = count_q.where(or_(*conditions))
                page_q = page_q.where(or_(*conditions))
            total = int((await s.execute(count_q)).scalar_one())
            if not limit:
                return total, []
            found = (await s.execute(page_q.offset(start).limit(limit))).all()
            rows = [r[0] for r in found]
            devices = {r[0].end_device_id: _end_device(r[1]) for r in found}
            lfdis = {i: d.lfdi for i, d in devices.items()}
            mups = await self._load(s, rows, lfdis)
            return total, [(m, devices[m.end_device_id]) for m in mups]

    async def readings(
        self,
        device_id: int,
        since: int | None,
        until: int | None,
        limit: int,
        *,
        latest: bool = False,
    ) -> list[StoredReading]:
        """A device's readings with start in [since, until), newest first; with latest=True
        only the newest of each MirrorMeterReading (one per ReadingType)."""
        window = [col(ReadingRow.end_device_id) == device_id]
        if since is not None:
            window.append(col(ReadingRow.start) >= since)
        if until is not None:
            window.append(col(ReadingRow.start) < until)
        query = (
            select(ReadingRow, MirrorMeterReadingRow, MirrorUsagePointRow.mrid)
            .join(MirrorMeterReadingRow, col(ReadingRow.mmr_id) == col(MirrorMeterReadingRow.id))
            .join(
                MirrorUsagePointRow,
                col(MirrorMeterReadingRow.mup_id) == col(MirrorUsagePointRow.id),
            )
            .where(*window)
            .order_by(col(ReadingRow.start).desc(), col(ReadingRow.id).desc())
            .limit(limit)
        )
        if latest:
            newest = (
                select(
                    col(ReadingRow.mmr_id).label("mmr_id"),
                    func.max(col(ReadingRow.start)).label("start"),
                )
                .where(*window)
                .group_by(col(ReadingRow.mmr_id))
                .subquery()
            )
            query = query.join(
                newest,
                and_(
                    col(ReadingRow.mmr_id) == newest.c.mmr_id,
                    col(ReadingRow.start) == newest.c.start,
                ),
            )
        async with self.store.transaction() as s:
            result = []
            for reading, mmr, mup_mrid in (await s.execute(query)).all():
                result.append(
                    StoredReading(
                        mup_mrid=str(mup_mrid),
                        mmr_mrid=mmr.mrid,
                        description=mmr.description,
                        reading_type=_reading_type(mmr),
                        reading=Reading(
                            value=reading.value,
                            power_of_ten_multiplier=reading.power_of_ten_multiplier,
                            start=reading.start,
                            duration=reading.duration,
                            quality_flags=reading.quality_flags,
                            local_id=reading.local_id,
                        ),
                        received_at=reading.received_at,
                    )
                )
            return result

    async def count_readings(self, device_id: int) -> int:
        async with self.store.transaction() as s:
            query = (
                select(func.count())
                .select_from(ReadingRow)
                .where(col(ReadingRow.end_device_id) == device_id)
            )
            return int((await s.execute(query)).scalar_one())

    # ---- writes -----------------------------------------------------------------
    async def _merge(
        self,
        s: AsyncSession,
        mup: MirrorUsagePointRow,
        drafts: Sequence[MeterReadingDraft],
        now: int,
    ) -> int:
        """Declare or repeat each draft's ReadingType, then store its readings.

        A ReadingType may change only while no readings of it are stored; a reading whose
        MirrorMeterReading was never declared is refused. Raises before the caller commits.
        """
        assert mup.id is not None
        existing = {
            r.mrid: r
            for r in await s.scalars(
                select(MirrorMeterReadingRow).where(col(MirrorMeterReadingRow.mup_id) == mup.id)
            )
        }
        stored = 0
        for draft in drafts:
            row = existing.get(draft.mrid)
            if draft.reading_type is not None:
                if row is None:
                    row = MirrorMeterReadingRow(
                        mup_id=mup.id,
                        mrid=draft.mrid,
                        description=draft.description,
                        uom=draft.reading_type.uom,
                        power_of_ten_multiplier=draft.reading_type.power_of_ten_multiplier,
                    )
                    _set_reading_type(row, draft.reading_type)
                    s.add(row)
                    await s.flush()
                    existing[draft.mrid] = row
                elif _reading_type(row) != draft.reading_type:
                    count_q = (
                        select(func.count())
                        .select_from(ReadingRow)
                        .where(col(ReadingRow.mmr_id) == row.id)
                    )
                    if (await s.execute(count_q)).scalar_one():
                        raise InvalidValues(
                            f"MirrorMeterReading {draft.mrid} already has readings of another "
                            "ReadingType; post a new mRID for a new ReadingType"
                        )
                    _set_reading_type(row, draft.reading_type)
                if draft.description is not None:
                    row.description = draft.description
            if not draft.readings:
                continue
            if row is None:
                raise InvalidValues(
                    f"MirrorMeterReading {draft.mrid} has no declared ReadingType: POST it "
                    f"with its ReadingType to /mup/{mup.id} first"
                )
            rt = _reading_type(row)
            readings = [
                replace(r, power_of_ten_multiplier=rt.power_of_ten_multiplier)
                for r in draft.readings
            ]
            check_readings(draft.mrid, rt, readings)
            stored += await self._put_readings(s, row, mup.end_device_id, readings, now)
        return stored

    async def _put_readings(
        self,
        s: AsyncSession,
        mmr: MirrorMeterReadingRow,
        device_id: int,
        readings: Sequence[Reading],
        now: int,
    ) -> int:
        """Insert, or replace the reading with the same start (a device's retry)."""
        assert mmr.id is not None
        starts = [r.start for r in readings]
        previous = {
            r.start: r
            for r in await s.scalars(
                select(ReadingRow).where(
                    col(ReadingRow.mmr_id) == mmr.id, col(ReadingRow.start).in_(starts)
                )
            )
        }
        for reading in readings:
            row = previous.get(reading.start)
            if row is None:
                row = ReadingRow(
                    mmr_id=mmr.id,
                    end_device_id=device_id,
                    value=reading.value,
                    power_of_ten_multiplier=reading.power_of_ten_multiplier,
                    start=reading.start,
                    received_at=now,
                )
                s.add(row)
            row.value = reading.value
            row.power_of_ten_multiplier = reading.power_of_ten_multiplier
            row.duration = reading.duration
            row.quality_flags = reading.quality_flags
            row.local_id = reading.local_id
            row.received_at = now
        await s.flush()
        return len(readings)

    async def upsert(self, device: EndDevice, draft: UsagePointDraft, now: int) -> WriteResult:
        async with self.store.transaction() as s:
            return await self.update_mup(s, device, draft, now)

    async def update_mup(
        self, s: AsyncSession, device: EndDevice, draft: UsagePointDraft, now: int
    ) -> WriteResult:
        """POST /mup: create the device's MirrorUsagePoint of this mRID or update it."""
        try:
            if await s.get(EndDeviceRow, device.id) is None:
                raise NotFound(f"EndDevice {device.lfdi} does not exist")
            row = (
                await s.scalars(
                    select(MirrorUsagePointRow).where(
                        col(MirrorUsagePointRow.end_device_id) == device.id,
                        col(MirrorUsagePointRow.mrid) == draft.mrid,
                    )
                )
            ).first()
            created = row is None
            if row is None:
                row = MirrorUsagePointRow(
                    end_device_id=device.id,
                    mrid=draft.mrid,
                    role_flags=draft.role_flags,
                    service_category_kind=draft.service_category_kind,
                    status=draft.status,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
            row.description = draft.description
            row.role_flags = draft.role_flags
            row.service_category_kind = draft.service_category_kind
            row.status = draft.status
            row.requested_post_rate = draft.post_rate
            row.updated_at = now
            await s.flush()
            stored = await self._merge(s, row, draft.readings, now)
            (mup,) = await self._load(s, [row], {device.id: device.lfdi})
            return WriteResult(mup, created, stored)
        except IntegrityError as exc:  # a concurrent POST of the same mRID won the race
            raise Conflict(f"MirrorUsagePoint {draft.mrid} was created concurrently") from exc

    async def post_readings(
        self, mup_id: int, drafts: Sequence[MeterReadingDraft], now: int
    ) -> WriteResult:
        async with self.store.transaction() as s:
            return await self.insert_readings(s, mup_id, drafts, now)

    async def insert_readings(
        self, s: AsyncSession, mup_id: int, drafts: Sequence[MeterReadingDraft], now: int
    ) -> WriteResult:
        """POST /mup/{id}: MirrorMeterReading(s) with ReadingTypes and/or readings."""
        try:
            row = await s.get(MirrorUsagePointRow, mup_id)
            device = None if row is None else await s.get(EndDeviceRow, row.end_device_id)
            if row is None or device is None:
                raise NotFound(f"no MirrorUsagePoint /mup/{mup_id}")
            stored = await self._merge(s, row, drafts, now)
            row.updated_at = now
            await s.flush()
            (mup,) = await self._load(s, [row], {device.id or 0: device.lfdi})
            return WriteResult(mup, False, stored)
        except IntegrityError as exc:
            raise Conflict("the same readings were posted concurrently; retry") from exc

    async def delete(self, mup_id: int) -> bool:
        async with self.store.transaction() as s:
            return await self.delete_mup(s, mup_id)

    async def delete_mup(self, s: AsyncSession, mup_id: int) -> bool:
        result = await s.execute(
            delete(MirrorUsagePointRow).where(col(MirrorUsagePointRow.id) == mup_id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def delete_for_devices(self, device_ids: Sequence[int]) -> int:
        async with self.store.transaction() as s:
            return await self.delete_mups_of_devices(s, device_ids)

    async def delete_mups_of_devices(self, s: AsyncSession, device_ids: Sequence[int]) -> int:
        """Delete every MirrorUsagePoint (readings included) of these devices."""
        if not device_ids:
            return 0
        result = await s.execute(
            delete(MirrorUsagePointRow).where(
                col(MirrorUsagePointRow.end_device_id).in_(list(device_ids))
            )
        )
        return int(getattr(result, "rowcount", 0))
