"""The Metering function set's read side (IEEE 2030.5 §10.6; CSIP IG metering): what devices
mirror through MirrorUsagePoints, readable as UsagePoint / MeterReading / ReadingSet /
Reading resources under `/upt`, linked from DeviceCapability as UsagePointListLink.

One UsagePoint per MirrorUsagePoint (same id and mRID), one MeterReading per
MirrorMeterReading (same mRID, its ReadingType at `.../rt`), and one ReadingSet per
MeterReading spanning all its readings (newest first in its ReadingList). The same access
rules as the mirror: a device reads its own, an aggregator those of the devices it manages,
everyone else 404. Render once: every document is cached until the mirror changes
(MirrorUsagePointChanged), new readings arrive (ReadingsAdded) or the client's list changes
(services/changes.py says which tags each drops).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from csip.domain.devices import EndDevice, Principal, mint_mrid
from csip.domain.paging import Page
from csip.domain.telemetry import MirrorMeterReading, MirrorUsagePoint, Reading
from csip.errors import NotFound
from csip.sep2 import hrefs
from csip.sep2.xml import E, link, serialize
from csip.services import changes as tag
from csip.services.cache import Entry
from csip.services.telemetry import TelemetryService, reading_type_element
from csip.store.der import KIND_READING_SET
from csip.store.telemetry import ReadingSummary

UPT_LIST = hrefs.usage_point_list()
READING_SET = 1  # the one ReadingSet of a MeterReading


def upt_href(mup: MirrorUsagePoint) -> str:
    return hrefs.usage_point(mup.id)


def mr_href(mup: MirrorUsagePoint, mmr: MirrorMeterReading) -> str:
    return f"{upt_href(mup)}/mr/{mmr.id}"


def rs_href(mup: MirrorUsagePoint, mmr: MirrorMeterReading) -> str:
    return f"{mr_href(mup, mmr)}/rs/{READING_SET}"


# ---- wire out --------------------------------------------------------------------
def _usage_point(mup: MirrorUsagePoint) -> Any:
    children = [E.mRID(mup.mrid)]
    if mup.description is not None:
        children.append(E.description(mup.description))
    children += [
        E.roleFlags(f"{mup.role_flags:04X}"),
        E.serviceCategoryKind(str(mup.service_category_kind)),
        E.status(str(mup.status)),
        E.deviceLFDI(mup.device_lfdi),
        link("MeterReadingListLink", f"{upt_href(mup)}/mr", len(mup.meter_readings)),
    ]
    return E.UsagePoint(*children, href=upt_href(mup))


def _meter_reading(
    mup: MirrorUsagePoint, mmr: MirrorMeterReading, summary: ReadingSummary | None
) -> Any:
    base = mr_href(mup, mmr)
    children = [E.mRID(mmr.mrid)]
    if mmr.description is not None:
        children.append(E.description(mmr.description))
    if summary is not None:
        children.append(link("ReadingLink", f"{rs_href(mup, mmr)}/r/{summary.latest_id}"))
    children.append(link("ReadingSetListLink", f"{base}/rs", 1 if summary else 0))
    children.append(link("ReadingTypeLink", f"{base}/rt"))
    return E.MeterReading(*children, href=base)


def _reading_set(
    mup: MirrorUsagePoint, mmr: MirrorMeterReading, summary: ReadingSummary, pen: int
) -> Any:
    href = rs_href(mup, mmr)
    return E.ReadingSet(
        E.mRID(mint_mrid((KIND_READING_SET << 80) | mmr.id, pen)),
        E.description((mmr.description or "readings")[:32]),
        E.timePeriod(
            E.duration(str(max(0, summary.last_end - summary.first_start))),
            E.start(str(summary.first_start)),
        ),
        link("ReadingListLink", f"{href}/r", summary.count),
        href=href,
    )


def _reading(href: str, reading: Reading) -> Any:
    children = []
    if reading.quality_flags is not None:
        children.append(E.qualityFlags(f"{reading.quality_flags:04X}"))
    period = [E.start(str(reading.start))]
    if reading.duration is not None:
        period.insert(0, E.duration(str(reading.duration)))
    children.append(E.timePeriod(*period))
    children.append(E.value(str(reading.value)))
    if reading.local_id is not None:
        children.append(E.localID(f"{reading.local_id:04X}"))
    return E.Reading(*children, href=href)


class MeteringService:
    def __init__(self, telemetry: TelemetryService) -> None:
        self.telemetry = telemetry
        self.sep2 = telemetry.sep2
        self.cache = telemetry.sep2.cache

    async def _render(
        self, key: tuple[Any, ...], tags: tuple[str, ...], build: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        entry = self.cache.get(key)
        if entry is None:
            generation = self.cache.generation
            entry = Entry(await build(), None, tags)
            self.cache.put(key, entry, generation)
        return entry.body

    async def _mirror(self, principal: Principal, upt_id: int) -> tuple[MirrorUsagePoint, Any]:
        try:
            entry = await self.telemetry._accessible(principal, upt_id)
        except NotFound as exc:
            raise NotFound(f"no such UsagePoint /upt/{upt_id}") from exc
        mup: MirrorUsagePoint = entry.owner[0]
        device: EndDevice = entry.owner[1]
        return mup, device

    def _tags(self, mup: MirrorUsagePoint) -> tuple[str, ...]:
        return (tag.mup(mup.id), tag.readings(mup.id), tag.edev(mup.end_device_id))

    async def _summaries(self, mup: MirrorUsagePoint) -> dict[int, ReadingSummary]:
        key = ("upt-summaries", mup.id)
        entry = self.cache.get(key)
        if entry is None:
            generation = self.cache.generation
            ids = [m.id for m in mup.meter_readings]
            entry = Entry(b"", await self.telemetry.store.reading_summaries(ids), self._tags(mup))
            self.cache.put(key, entry, generation)
        summaries: dict[int, ReadingSummary] = entry.owner
        return summaries

    async def _meter(
        self, principal: Principal, upt_id: int, mr_id: int
    ) -> tuple[MirrorUsagePoint, MirrorMeterReading]:
        mup, _ = await self._mirror(principal, upt_id)
        for mmr in mup.meter_readings:
            if mmr.id == mr_id:
                return mup, mmr
        raise NotFound(f"no such MeterReading /upt/{upt_id}/mr/{mr_id}")

    # ---- reads -----------------------------------------------------------------------
    async def usage_point_list(self, principal: Principal, page: Page) -> bytes:
        async def build() -> tuple[bytes, int]:
            total, found = await self.telemetry.store.page(
                **self.telemetry._scope(principal), start=page.start, limit=page.limit
            )
            rates = await self.sep2.poll_rates()
            items = [_usage_point(m) for m, _ in found]
            element = E.UsagePointList(
                *items,
                href=UPT_LIST,
                all=str(total),
                results=str(len(items)),
                pollRate=str(rates["UsagePointList"]),
            )
            return serialize(element), total

        key = ("upts", principal.scope, page.key())
        tags = (tag.SETTINGS, tag.mup_list(principal.scope), tag.edev_list(principal.scope))
        return await self.cache.fetch_page(key, page, tags, build)

    async def usage_point(self, principal: Principal, upt_id: int) -> bytes:
        mup, _ = await self._mirror(principal, upt_id)

        async def build() -> bytes:
            return serialize(_usage_point(mup))

        return await self._render(("upt", upt_id), self._tags(mup), build)

    async def meter_reading_list(self, principal: Principal, upt_id: int, page: Page) -> bytes:
        mup, _ = await self._mirror(principal, upt_id)

        async def build() -> tuple[bytes, int]:
            summaries = await self._summaries(mup)
            chosen = mup.meter_readings[page.start : page.start + page.limit]
            element = E.MeterReadingList(
                *(_meter_reading(mup, m, summaries.get(m.id)) for m in chosen),
                href=f"{upt_href(mup)}/mr",
                all=str(len(mup.meter_readings)),
                results=str(len(chosen)),
            )
            return serialize(element), len(mup.meter_readings)

        key = ("upt-mrs", upt_id, page.key())
        return await self.cache.fetch_page(key, page, self._tags(mup), build)

    async def meter_reading(self, principal: Principal, upt_id: int, mr_id: int) -> bytes:
        mup, mmr = await self._meter(principal, upt_id, mr_id)

        async def build() -> bytes:
            summary = (await self._summaries(mup)).get(mmr.id)
            return serialize(_meter_reading(mup, mmr, summary))

        return await self._render(("upt-mr", upt_id, mr_id), self._tags(mup), build)

    async def reading_type(self, principal: Principal, upt_id: int, mr_id: int) -> bytes:
        mup, mmr = await self._meter(principal, upt_id, mr_id)

        async def build() -> bytes:
            element = reading_type_element(mmr.reading_type)
            element.set("href", f"{mr_href(mup, mmr)}/rt")
            return serialize(element)

        return await self._render(("upt-rt", upt_id, mr_id), self._tags(mup), build)

    async def reading_set_list(
        self, principal: Principal, upt_id: int, mr_id: int, page: Page
    ) -> bytes:
        mup, mmr = await self._meter(principal, upt_id, mr_id)

        async def build() -> tuple[bytes, int]:
            summary = (await self._summaries(mup)).get(mmr.id)
            sets = [] if summary is None else [summary]
            chosen = sets[page.start : page.start + page.limit]
            pen = self.sep2.settings.pen
            element = E.ReadingSetList(
                *(_reading_set(mup, mmr, s, pen) for s in chosen),
                href=f"{mr_href(mup, mmr)}/rs",
                all=str(len(sets)),
                results=str(len(chosen)),
            )
            return serialize(element), len(sets)

        key = ("upt-rss", upt_id, mr_id, page.key())
        return await self.cache.fetch_page(key, page, self._tags(mup), build)

    async def _summary(
        self, principal: Principal, upt_id: int, mr_id: int, rs_id: int
    ) -> tuple[MirrorUsagePoint, MirrorMeterReading, ReadingSummary]:
        mup, mmr = await self._meter(principal, upt_id, mr_id)
        summary = (await self._summaries(mup)).get(mmr.id)
        if rs_id != READING_SET or summary is None:
            raise NotFound(f"no such ReadingSet {mr_href(mup, mmr)}/rs/{rs_id}")
        return mup, mmr, summary

    async def reading_set(self, principal: Principal, upt_id: int, mr_id: int, rs_id: int) -> bytes:
        mup, mmr, summary = await self._summary(principal, upt_id, mr_id, rs_id)

        async def build() -> bytes:
            return serialize(_reading_set(mup, mmr, summary, self.sep2.settings.pen))

        return await self._render(("upt-rs", upt_id, mr_id), self._tags(mup), build)

    async def reading_list(
        self, principal: Principal, upt_id: int, mr_id: int, rs_id: int, page: Page
    ) -> bytes:
        mup, mmr, _ = await self._summary(principal, upt_id, mr_id, rs_id)

        async def build() -> tuple[bytes, int]:
            total, found = await self.telemetry.store.page_readings(mmr.id, page.start, page.limit)
            href = f"{rs_href(mup, mmr)}/r"
            element = E.ReadingList(
                *(_reading(f"{href}/{i}", r) for i, r in found),
                href=href,
                all=str(total),
                results=str(len(found)),
            )
            return serialize(element), total

        key = ("upt-rl", upt_id, mr_id, page.key())
        return await self.cache.fetch_page(key, page, self._tags(mup), build)

    async def reading(
        self, principal: Principal, upt_id: int, mr_id: int, rs_id: int, reading_id: int
    ) -> bytes:
        mup, mmr, _ = await self._summary(principal, upt_id, mr_id, rs_id)
        href = f"{rs_href(mup, mmr)}/r/{reading_id}"

        key = ("upt-r", upt_id, mr_id, reading_id)
        entry = self.cache.get(key)
        if entry is not None:
            return entry.body
        generation = self.cache.generation
        found = await self.telemetry.store.get_reading(mmr.id, reading_id)
        if found is None:  # never cached: probing ids cannot grow the cache
            raise NotFound(f"no such Reading {href}")
        body = serialize(_reading(href, found))
        self.cache.put(key, Entry(body, None, self._tags(mup)), generation)
        return body
