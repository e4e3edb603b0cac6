"""Telemetry use cases: the metering mirror of IEEE 2030.5 (MirrorUsagePointList,
MirrorUsagePoint, MirrorMeterReading(List), ReadingType, Reading) and its admin read-back.

Reads go through the Sep2Service render cache. A MirrorUsagePoint's bytes are tagged with
itself (`mup:{id}`), its EndDevice (`edev:{id}`: the per-device postRate, deletion) and the
settings (the global postRate); a list page with the client's scope (`mups:{scope}`, new or
deleted MUPs) and its EndDeviceList tag (`edevs:{scope}`: a device moved or deleted). Posting
readings changes no rendered bytes (csip does not echo readings back), so a device that
posts every minute does not re-render its MirrorUsagePoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lxml import etree

from csip.domain.changes import EndDeviceChanged, MirrorUsagePointChanged, ReadingsAdded
from csip.domain.devices import EndDevice, Principal, PrincipalKind, may_access
from csip.domain.paging import Page
from csip.domain.telemetry import (
    ACCUMULATIONS,
    DATA_QUALIFIERS,
    FLOW_DIRECTIONS,
    KINDS,
    PHASES,
    UNITS,
    MeterReadingDraft,
    MirrorMeterReading,
    MirrorUsagePoint,
    Reading,
    ReadingType,
    StoredReading,
    UsagePointDraft,
    check_reading_type,
    check_usage_point,
    effective_post_rate,
    normalize_mrid,
)
from csip.errors import BadRequest, Forbidden, InvalidValues, NotFound
from csip.pki.identity import normalize_lfdi
from csip.sep2.xml import E, serialize, tag, text
from csip.services import changes as tags_of
from csip.services import fleet
from csip.services.cache import Entry
from csip.services.sep2 import SETTINGS_TAG, Sep2Service, device_ref
from csip.store import store as db
from csip.store.telemetry import TelemetryStore, WriteResult

MUP_LIST = "/mup"
_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(MirrorMeterReading(?:List)?)[\s/>]")


mup_tag = tags_of.mup


def _hex16(value: int) -> str:
    return f"{value:04X}"


def _int(element: etree._Element, name: str) -> int | None:
    raw = text(element, name)
    return None if raw is None else int(raw)


def _hex(element: etree._Element, name: str) -> int | None:
    raw = text(element, name)
    return None if raw is None or raw == "" else int(raw, 16)


# ---- wire in ---------------------------------------------------------------------
def parse_reading_type(element: etree._Element, mrid: str) -> ReadingType:
    uom = _int(element, "uom")
    if uom is None:
        raise InvalidValues(f"the ReadingType of MirrorMeterReading {mrid} must state its uom")
    for name in ("numberOfConsumptionBlocks", "numberOfTouTiers"):
        if _int(element, name):
            raise InvalidValues(f"{name} is not supported: csip mirrors untiered readings")
    for name in ("calorificValue", "conversionFactor", "supplyLimit", "maxNumberOfIntervals"):
        if element.find(tag(name)) is not None:
            raise InvalidValues(f"ReadingType {name} is not supported (electricity readings)")
    return ReadingType(
        uom=uom,
        power_of_ten_multiplier=_int(element, "powerOfTenMultiplier") or 0,
        kind=_int(element, "kind"),
        phase=_int(element, "phase"),
        flow_direction=_int(element, "flowDirection"),
        data_qualifier=_int(element, "dataQualifier"),
        accumulation_behaviour=_int(element, "accumulationBehaviour"),
        commodity=_int(element, "commodity"),
        interval_length=_int(element, "intervalLength"),
    )


def _period(element: etree._Element | None) -> tuple[int, int] | None:
    if element is None:
        return None
    return int(text(element, "start") or 0), int(text(element, "duration") or 0)


def _reading(element: etree._Element, mrid: str, default: tuple[int, int | None] | None) -> Reading:
    value = _int(element, "value")
    if value is None:
        raise InvalidValues(f"a Reading of MirrorMeterReading {mrid} has no value")
    if _int(element, "touTier") or _int(element, "consumptionBlock"):
        raise InvalidValues("touTier and consumptionBlock are not supported")
    period: tuple[int, int | None] | None = _period(element.find(tag("timePeriod")))
    period = period or default
    if period is None:
        raise InvalidValues(
            f"a Reading of MirrorMeterReading {mrid} needs a timePeriod (or its "
            "MirrorReadingSet's, or the MirrorMeterReading's lastUpdateTime)"
        )
    return Reading(
        value=value,
        power_of_ten_multiplier=0,  # the declared ReadingType's, set when stored
        start=period[0],
        duration=period[1],
        quality_flags=_hex(element, "qualityFlags"),
        local_id=_hex(element, "localID"),
    )


def parse_meter_reading(element: etree._Element) -> MeterReadingDraft:
    mrid = normalize_mrid(text(element, "mRID") or "")
    last_update = _int(element, "lastUpdateTime")
    default: tuple[int, int | None] | None = (
        (last_update, None) if last_update is not None else None
    )
    readings: list[Reading] = []
    for reading_set in element.findall(tag("MirrorReadingSet")):
        set_period = _period(reading_set.find(tag("timePeriod")))
        for child in reading_set.findall(tag("Reading")):
            readings.append(_reading(child, mrid, set_period or default))
    single = element.find(tag("Reading"))
    if single is not None:
        readings.append(_reading(single, mrid, default))
    rt_element = element.find(tag("ReadingType"))
    return MeterReadingDraft(
        mrid=mrid,
        description=text(element, "description"),
        reading_type=None if rt_element is None else parse_reading_type(rt_element, mrid),
        readings=tuple(readings),
    )


def parse_usage_point(root: etree._Element) -> UsagePointDraft:
    return UsagePointDraft(
        mrid=normalize_mrid(text(root, "mRID") or ""),
        device_lfdi=normalize_lfdi(text(root, "deviceLFDI") or ""),
        role_flags=_hex(root, "roleFlags") or 0,
        service_category_kind=_int(root, "serviceCategoryKind") or 0,
        status=_int(root, "status") or 0,
        description=text(root, "description"),
        post_rate=_int(root, "postRate"),
        readings=tuple(parse_meter_reading(m) for m in root.findall(tag("MirrorMeterReading"))),
    )


# ---- wire out --------------------------------------------------------------------
def reading_type_element(rt: ReadingType) -> Any:
    """ReadingType children in sep.xsd order; absent values stay absent."""
    children = []
    for name, value in (
        ("accumulationBehaviour", rt.accumulation_behaviour),
        ("commodity", rt.commodity),
        ("dataQualifier", rt.data_qualifier),
        ("flowDirection", rt.flow_direction),
        ("intervalLength", rt.interval_length),
        ("kind", rt.kind),
        ("phase", rt.phase),
        ("powerOfTenMultiplier", rt.power_of_ten_multiplier),
        ("uom", rt.uom),
    ):
        if value is not None:
            children.append(E(name, str(value)))
    return E.ReadingType(*children)


def _mmr_element(mup: MirrorUsagePoint, mmr: MirrorMeterReading) -> Any:
    children = [E.mRID(mmr.mrid)]
    if mmr.description is not None:
        children.append(E.description(mmr.description))
    children.append(reading_type_element(mmr.reading_type))
    return E.MirrorMeterReading(*children, href=f"{mup.href}/mr/{mmr.id}")


def _mup_element(mup: MirrorUsagePoint, post_rate: int | None) -> Any:
    children = [E.mRID(mup.mrid)]
    if mup.description is not None:
        children.append(E.description(mup.description))
    children += [
        E.roleFlags(_hex16(mup.role_flags)),
        E.serviceCategoryKind(str(mup.service_category_kind)),
        E.status(str(mup.status)),
        E.deviceLFDI(mup.device_lfdi),
    ]
    children += [_mmr_element(mup, m) for m in mup.meter_readings]
    if post_rate is not None:
        children.append(E.postRate(str(post_rate)))
    return E.MirrorUsagePoint(*children, href=mup.href)


# ---- admin JSON ---------------------------------------------------------------------
def reading_type_json(rt: ReadingType) -> dict[str, Any]:
    unit = UNITS[rt.uom]
    return {
        "uom": rt.uom,
        "unit": unit.symbol,
        "quantity": unit.quantity,
        "power_of_ten_multiplier": rt.power_of_ten_multiplier,
        "kind": rt.kind,
        "kind_name": KINDS.get(rt.kind) if rt.kind is not None else None,
        "phase": rt.phase,
        "phase_name": PHASES.get(rt.phase) if rt.phase is not None else None,
        "flow_direction": rt.flow_direction,
        "flow_direction_name": (
            FLOW_DIRECTIONS.get(rt.flow_direction) if rt.flow_direction is not None else None
        ),
        "data_qualifier": rt.data_qualifier,
        "data_qualifier_name": (
            DATA_QUALIFIERS.get(rt.data_qualifier) if rt.data_qualifier is not None else None
        ),
        "accumulation_behaviour": rt.accumulation_behaviour,
        "accumulation_behaviour_name": (
            ACCUMULATIONS.get(rt.accumulation_behaviour)
            if rt.accumulation_behaviour is not None
            else None
        ),
        "commodity": rt.commodity,
        "interval_length": rt.interval_length,
    }


def reading_json(reading: Reading, received_at: int | None = None) -> dict[str, Any]:
    physical = reading.physical
    out: dict[str, Any] = {
        "value": reading.value,
        "power_of_ten_multiplier": reading.power_of_ten_multiplier,
        "physical": float(physical),
        "physical_exact": format(physical, "f"),
        "start": reading.start,
        "duration": reading.duration,
        "quality_flags": reading.quality_flags,
        "local_id": reading.local_id,
    }
    if received_at is not None:
        out["received_at"] = received_at
    return out


def mup_json(mup: MirrorUsagePoint, post_rate: int | None) -> dict[str, Any]:
    return {
        "href": mup.href,
        "mrid": mup.mrid,
        "description": mup.description,
        "device_lfdi": mup.device_lfdi,
        "role_flags": _hex16(mup.role_flags),
        "service_category_kind": mup.service_category_kind,
        "status": mup.status,
        "post_rate": post_rate,
        "requested_post_rate": mup.requested_post_rate,
        "meter_readings": [
            {
                "href": f"{mup.href}/mr/{m.id}",
                "mrid": m.mrid,
                "description": m.description,
                "reading_type": reading_type_json(m.reading_type),
            }
            for m in mup.meter_readings
        ],
    }


def readings_by_type(
    latest: Sequence[StoredReading], found: Sequence[StoredReading]
) -> list[dict[str, Any]]:
    """One entry per MirrorMeterReading (one ReadingType each): its newest reading in the
    window, and the window's readings (newest first, up to the limit overall)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for item in latest:
        groups[(item.mup_mrid, item.mmr_mrid)] = {
            "mirror_usage_point": item.mup_mrid,
            "mirror_meter_reading": item.mmr_mrid,
            "description": item.description,
            "reading_type": reading_type_json(item.reading_type),
            "latest": reading_json(item.reading, item.received_at),
            "readings": [],
        }
    for item in found:
        group = groups.get((item.mup_mrid, item.mmr_mrid))
        if group is not None:
            group["readings"].append(reading_json(item.reading, item.received_at))
    return list(groups.values())


def _scope(principal: Principal) -> dict[str, Any]:
    if principal.kind is PrincipalKind.AGGREGATOR:
        return {"aggregator_id": principal.aggregator_id, "lfdi": principal.lfdi}
    return {"lfdi": principal.lfdi}


async def count_mirror_usage_points(store: TelemetryStore, principal: Principal) -> int:
    """How many MirrorUsagePoints this client sees (the /dcap link's `all`)."""
    total, _ = await store.page(**_scope(principal), limit=0)
    return total


class TelemetryService:
    def __init__(self, sep2: Sep2Service) -> None:
        self.sep2 = sep2
        self.store = TelemetryStore(sep2.store)

    # ---- shared ------------------------------------------------------------------
    def _scope(self, principal: Principal) -> dict[str, Any]:
        return _scope(principal)

    async def _post_rate(self, device: EndDevice, mup: MirrorUsagePoint) -> int | None:
        default = await self.sep2.default_post_rate()
        return effective_post_rate(device.post_rate, default, mup.requested_post_rate)

    async def count(self, principal: Principal) -> int:
        """How many MirrorUsagePoints this client sees (the /dcap link's `all`)."""
        return await count_mirror_usage_points(self.store, principal)

    async def _entry(self, mup_id: int) -> Entry:
        """The cached rendering of /mup/{id}; owner is (MUP, EndDevice). Unknown ids are
        answered from the database every time and never cached."""
        key = ("mup", mup_id)
        cache = self.sep2.cache
        entry = cache.get(key)
        if entry is not None:
            return entry
        generation = cache.generation
        found = await self.store.get(mup_id)
        if found is None:
            return Entry(b"", None)
        mup, device = found
        body = serialize(_mup_element(mup, await self._post_rate(device, mup)))
        entry = Entry(body, found, (mup_tag(mup_id), tags_of.edev(device.id), SETTINGS_TAG))
        cache.put(key, entry, generation)
        return entry

    async def _accessible(self, principal: Principal, mup_id: int) -> Entry:
        entry = await self._entry(mup_id)
        if entry.owner is None or not may_access(principal, entry.owner[1]):
            raise NotFound(f"no such MirrorUsagePoint /mup/{mup_id}")
        return entry

    # ---- 2030.5 reads -------------------------------------------------------------
    async def mup_list(self, principal: Principal, page: Page) -> bytes:
        key = ("mups", principal.scope, page.key())
        cache = self.sep2.cache
        entry = cache.get(key)
        if entry is not None:
            return entry.body

        async def load() -> Entry:
            total, found = await self.store.page(
                **self._scope(principal), start=page.start, limit=page.limit
            )
            rates = await self.sep2.poll_rates()
            items = [_mup_element(m, await self._post_rate(d, m)) for m, d in found]
            body = serialize(
                E.MirrorUsagePointList(
                    *items,
                    href=MUP_LIST,
                    all=str(total),
                    results=str(len(items)),
                    pollRate=str(rates["MirrorUsagePointList"]),
                )
            )
            scope = principal.scope
            tags = (SETTINGS_TAG, tags_of.mup_list(scope), tags_of.edev_list(scope))
            return Entry(body, tags=tags, keep=page.kept(total))

        return (await cache.fetch(key, load)).body

    async def mup(self, principal: Principal, mup_id: int) -> bytes:
        return (await self._accessible(principal, mup_id)).body

    async def meter_reading(self, principal: Principal, mup_id: int, mmr_id: int) -> bytes:
        entry = await self._accessible(principal, mup_id)
        mup: MirrorUsagePoint = entry.owner[0]
        for mmr in mup.meter_readings:
            if mmr.id == mmr_id:
                return serialize(_mmr_element(mup, mmr))
        raise NotFound(f"no such MirrorMeterReading {mup.href}/mr/{mmr_id}")

    # ---- 2030.5 writes ------------------------------------------------------------
    async def _target(self, principal: Principal, lfdi: str) -> EndDevice:
        """The EndDevice a MirrorUsagePoint names, if this client may post for it."""
        device = await self.sep2.store.get_end_device_by_lfdi(lfdi)
        if device is None and lfdi == principal.lfdi:
            raise NotFound(f"register EndDevice {lfdi} (POST /edev) before mirroring it")
        if device is None or not may_access(principal, device):
            raise Forbidden(f"deviceLFDI {lfdi} is not an EndDevice this client may post for")
        return device

    async def post_mup(self, principal: Principal, body: bytes) -> WriteResult:
        """POST /mup: one MirrorUsagePoint per (mRID, device); a repeat updates it."""
        draft = parse_usage_point(self.sep2.parse_body(body, "MirrorUsagePoint"))
        check_usage_point(draft)
        for mmr in draft.readings:
            if mmr.reading_type is not None:
                check_reading_type(mmr.mrid, mmr.reading_type)
        device = await self._target(principal, draft.device_lfdi)
        async with self.sep2.changes.unit_of_work() as tx:
            now = self.sep2.clock.now_int()
            result = await self.store.update_mup(tx.session, device, draft, now)
            await fleet.record_post_rate(tx, device.id, draft.post_rate)
            await fleet.record_readings(tx, device.id, result.mup, draft.readings, now)
            tx.record(MirrorUsagePointChanged(result.mup.id, device_ref(device)))
        return result

    async def post_readings(
        self, principal: Principal, mup_id: int, body: bytes
    ) -> tuple[WriteResult, str]:
        """POST /mup/{id}: a MirrorMeterReading or a MirrorMeterReadingList. Answers the
        result and the href to put in Location."""
        entry = await self._accessible(principal, mup_id)
        device: EndDevice = entry.owner[1]
        match = _ROOT.search(body[:4096])
        expected = match.group(1).decode() if match else "MirrorMeterReading"
        root = self.sep2.parse_body(body, expected)
        if expected == "MirrorMeterReadingList":
            drafts = [parse_meter_reading(m) for m in root.findall(tag("MirrorMeterReading"))]
        else:
            drafts = [parse_meter_reading(root)]
        if not drafts:
            raise BadRequest("no MirrorMeterReading in the body")
        mrids = [d.mrid for d in drafts]
        if len(set(mrids)) != len(mrids):
            raise InvalidValues("the same MirrorMeterReading mRID appears twice")
        for draft in drafts:
            if draft.reading_type is not None:
                check_reading_type(draft.mrid, draft.reading_type)
        async with self.sep2.changes.unit_of_work() as tx:
            now = self.sep2.clock.now_int()
            result = await self.store.insert_readings(tx.session, mup_id, drafts, now)
            await fleet.record_readings(tx, device.id, result.mup, drafts, now)
            if any(d.reading_type is not None or d.description is not None for d in drafts):
                tx.record(MirrorUsagePointChanged(mup_id, device_ref(device)))
            else:  # only the metering read side (/upt) shows readings
                tx.record(ReadingsAdded(mup_id))
        href = result.mup.href
        if len(drafts) == 1:
            for mmr in result.mup.meter_readings:
                if mmr.mrid == drafts[0].mrid:
                    href = f"{result.mup.href}/mr/{mmr.id}"
        return result, href

    async def delete_mup(self, principal: Principal, mup_id: int) -> None:
        entry = await self._accessible(principal, mup_id)
        async with self.sep2.changes.unit_of_work() as tx:
            await self.store.delete_mup(tx.session, mup_id)
            tx.record(MirrorUsagePointChanged(mup_id, device_ref(entry.owner[1])))

    # ---- admin ----------------------------------------------------------------------
    async def device_mups(self, device: EndDevice) -> list[dict[str, Any]]:
        _, found = await self.store.page(device_id=device.id, limit=1_000_000)
        return [mup_json(m, await self._post_rate(d, m)) for m, d in found]

    async def device_readings(
        self, device: EndDevice, since: int | None, until: int | None, limit: int
    ) -> dict[str, Any]:
        found = await self.store.readings(device.id, since, until, limit)
        latest = await self.store.readings(device.id, since, until, 1_000_000, latest=True)
        return {
            "lfdi": device.lfdi,
            "since": since,
            "until": until,
            "count": len(found),
            "reading_types": readings_by_type(latest, found),
        }

    async def delete_for_devices(self, devices: Sequence[EndDevice]) -> int:
        """Delete all MirrorUsagePoints (and readings) of these devices."""
        async with self.sep2.changes.unit_of_work() as tx:
            removed = await self.store.delete_mups_of_devices(tx.session, [d.id for d in devices])
            # every /mup/{id} of these devices is tagged with its EndDevice, so all are dropped
            tx.record(*(EndDeviceChanged(device_ref(d)) for d in devices))
        return removed

    async def set_post_rate(self, device: EndDevice, post_rate: int | None) -> EndDevice:
        """The device's own postRate (None: the global default applies)."""
        async with self.sep2.changes.unit_of_work() as tx:
            updated = await db.update_end_device(tx.session, device.id, post_rate=post_rate)
            tx.record(EndDeviceChanged(device_ref(device)), EndDeviceChanged(device_ref(updated)))
        return updated
