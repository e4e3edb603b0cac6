"""The fleet's facts and capacity: what each DER posted, taken at write time, and what a
group, an aggregator's devices or the whole fleet can give above its reserves, now and for
each of the next 24 hours (issue 12 items 1 and 5).

The write side is two functions the device-facing services call inside their own unit of
work (`record_document` from a DER document PUT, `record_readings` from a reading batch), so
the facts commit with the post or not at all, at the cost of one upsert each (plus, once an
hour per device, recomputing its hour-of-day behaviour from at most 216 rows).

The read side (`FleetService`) answers the admin API. It keeps what capacity needs of every
device in memory (`FleetFacts`: one CapacityInputs tuple each, read in one query the first
time) and re-reads only the devices whose facts changed since: each fact write records a
DerFactsChanged, and services/changes.py turns it into the tag that marks the device here
and in every other worker. A device's forecast states of charge depend on the hour, not the
second, so they are kept too until the hour or the device's facts change. A query then reads
the ids in its scope (none for the whole fleet) and sums.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from csip.domain.changes import DerFactsChanged
from csip.domain.devices import EndDevice
from csip.domain.fleet import (
    CapacityInputs,
    DerFacts,
    FleetCapacity,
    ForecastError,
    Schedule,
    capacity_of,
    forecast_socs,
    hour_of_day_profile,
    yesterday_error,
)
from csip.domain.groups import descendants
from csip.domain.telemetry import MeterReadingDraft, MirrorUsagePoint
from csip.domain.ven_capacity import VenCapacity, ven_capacity
from csip.errors import NotFound
from csip.openadr.reports import storage_values
from csip.openadr.rules import PROGRAM, REPORT, RESOURCE, VEN, targets_meet
from csip.pki.identity import normalize_lfdi
from csip.sep2 import convert
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.sep2 import Sep2Service
from csip.store import der as der_store
from csip.store import engine as engine_store
from csip.store import fleet as store
from csip.store import openadr as oadr
from csip.store.openadr import StoredObject
from csip.store.outbox import Session
from csip.store.uow import UnitOfWork

#: Flagged devices listed by LFDI in one answer (all are counted).
FLAGGED_LISTED = 1000
#: Setpoints read for the forecast: from an hour back (a state of charge is at most twice
#: the postRate old when counted) to the longest forecast the admin API gives (168 h).
SCHEDULE_BEFORE = 3600
SCHEDULE_AHEAD = 168 * 3600


# ---- write side: called inside the posting service's unit of work ---------------------------
async def record_document(tx: UnitOfWork, device_id: int, root: etree._Element, at: int) -> None:
    """A DER document was PUT: its facts replace those of its part."""
    document = convert.der_document(root)
    if document is not None:
        await store.update_der_document_facts(tx.session, device_id, document, at)
        tx.record(DerFactsChanged(device_id))


async def record_readings(
    tx: UnitOfWork,
    device_id: int,
    mup: MirrorUsagePoint,
    drafts: Sequence[MeterReadingDraft],
    received_at: int,
) -> None:
    """A batch of readings was stored under `mup` (which holds each MirrorMeterReading's
    ReadingType, declared now or before): the newest W and state of charge, the hours it
    covers, and, when an hour has passed since the last time, the hour-of-day behaviour."""
    types = {m.mrid: m.reading_type for m in mup.meter_readings}
    batches = [(types[d.mrid], d.readings) for d in drafts if d.readings and d.mrid in types]
    facts = convert.reading_facts(batches, mup.role_flags, received_at)
    if facts is None:
        return
    tx.record(DerFactsChanged(device_id))
    computed_before = await store.update_reading_facts(tx.session, device_id, facts)
    hour = max(h.hour for h in facts.hours)
    if computed_before is None or computed_before < hour:
        samples = await store.select_hour_samples(tx.session, [device_id])
        profile = hour_of_day_profile(samples[device_id], hour)
        await store.update_profile(tx.session, device_id, profile, hour)


async def record_post_rate(tx: UnitOfWork, device_id: int, post_rate: int | None) -> None:
    """The postRate a posted MirrorUsagePoint asked for."""
    await store.update_requested_post_rate(tx.session, device_id, post_rate)
    tx.record(DerFactsChanged(device_id))


# ---- read side --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VenReport:
    """A VEN's (an aggregator's) capacity, from its own storage reports."""

    ven_id: str
    ven_name: str
    capacity: VenCapacity


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """A fleet's capacity with what it was asked for, and the flagged devices by LFDI;
    for an OpenADR program, beside its 2030.5 groups, the VENs granted the program."""

    scope: dict[str, object]
    capacity: FleetCapacity
    flagged: dict[str, str]
    error: ForecastError | None = None
    vens: tuple[VenReport, ...] | None = None


class FleetFacts:
    """The fleet's capacity inputs in memory, and each device's forecast states of charge
    for the hour they were made for. Marked by tags (`on_tags`), refreshed by the next query
    (`FleetService._inputs`): nothing is read between queries."""

    def __init__(self) -> None:
        #: device id -> its inputs, in id order; None: not read yet, or dropped.
        self.devices: dict[int, CapacityInputs] | None = None
        #: Devices whose facts changed since they were read.
        self.dirty: set[int] = set()
        #: Bumped on each full drop, so a read that overlapped one is not installed.
        self.generation = 0
        #: device id -> (the inputs they were made from, first forecast start, the socs).
        self.socs: dict[int, tuple[CapacityInputs, int, array[float]]] = {}
        #: Rows read so far (tests count them: an unchanged fleet is not read again).
        self.rows_read = 0
        #: device id -> its own setpoints ahead (per-device dispatch controls), attached to
        #: its inputs; None: to be read again (a program's controls changed, or a new hour).
        self.schedules: dict[int, Schedule] | None = None
        self.schedules_for = -1

    def on_tags(self, tags: list[str]) -> None:
        for name in tags:
            if name in (EVERYTHING, tag.SETTINGS):  # the default postRate moves every device
                self.drop()
                return
            device = tag.fleet_device_of(name)
            if device is not None and self.devices is not None:
                self.dirty.add(device)
            elif tag.program_of(name) is not None:  # controls published or cancelled
                self.schedules = None

    def drop(self) -> None:
        self.devices = None
        self.dirty.clear()
        self.socs.clear()
        self.schedules = None
        self.generation += 1

    def forecast_socs(self, device: CapacityInputs, starts: Sequence[int]) -> array[float]:
        """forecast_socs, kept while the device's inputs and the hour stay the same."""
        kept = self.socs.get(device.device_id)
        if (
            kept is not None
            and kept[0] is device
            and kept[1] == starts[0]
            and len(kept[2]) == len(starts)
        ):
            return kept[2]
        socs = array("d", forecast_socs(device, starts))
        self.socs[device.device_id] = (device, starts[0], socs)
        return socs


class FleetService:
    def __init__(self, sep2: Sep2Service) -> None:
        self.sep2 = sep2
        self.cache = FleetFacts()
        sep2.bus.subscribe(self.cache.on_tags)

    async def _device(self, lfdi: str) -> EndDevice:
        found = await self.sep2.store.get_end_device_by_lfdi(normalize_lfdi(lfdi))
        if found is None:
            raise NotFound(f"no EndDevice with lFDI {lfdi}")
        return found

    async def facts(self, lfdi: str) -> tuple[EndDevice, DerFacts]:
        """One device's facts, with the postRate that decides when they go stale."""
        device = await self._device(lfdi)
        default = await self.sep2.default_post_rate()
        async with self.sep2.store.transaction() as s:
            found = await store.select_der_facts(
                s, device_ids=[device.id], default_post_rate=default
            )
        return device, found[0] if found else DerFacts(device.id)

    async def set_site_reserve(self, lfdi: str, percent: float | None) -> DerFacts:
        """The utility's reserve for this site (None: no override). No rendered resource or
        subscriber depends on it; the fleet's capacity inputs do."""
        device = await self._device(lfdi)
        async with self.sep2.changes.unit_of_work() as tx:
            await store.update_site_reserve(tx.session, device.id, percent)
            tx.record(DerFactsChanged(device.id))
        return (await self.facts(lfdi))[1]

    async def capacity(
        self,
        *,
        group_id: int | None = None,
        aggregator: str | None = None,
        program_id: int | None = None,
        openadr_program: str | None = None,
        program_floor: float = 0.0,
        duration: int = 3600,
        hours: int = 24,
        with_error: bool = False,
    ) -> CapacityReport:
        """Capacity above reserve now and per hour ahead, for a group (and the groups below
        it), a DERProgram's group, an OpenADR program's enrolled groups (its reserve floor
        term applies when higher than `program_floor`), an aggregator's devices, or (none
        given) every device."""
        scope: dict[str, object] = {}
        group_ids: set[int] | None = None
        aggregator_id: int | None = None
        now = self.sep2.clock.now_int()
        default = await self.sep2.default_post_rate()
        async with self.sep2.store.transaction() as s:
            if program_id is not None:
                program = await der_store.select_program(s, program_id)
                if program is None or program.deleted_at is not None:
                    raise NotFound(f"no program {program_id}")
                scope["program"] = program_id
                group_id = program.group_id
            if group_id is not None:
                groups = await der_store.select_groups(s)
                if group_id not in groups:
                    raise NotFound(f"no group {group_id}")
                group_ids = descendants(groups, group_id)
                scope["group"] = group_id  # (a program's: its group)
            if openadr_program is not None:
                choices = await engine_store.select_choices(s, openadr_program)
                enrolled = await engine_store.select_enrollments(s, openadr_program)
                if choices is None and not enrolled:
                    raise NotFound(f"no program {openadr_program!r} with enrolled groups")
                groups = await der_store.select_groups(s)
                group_ids = set()
                for enrollment in enrolled:
                    group_ids |= descendants(groups, enrollment.group_id)
                floor = None if choices is None else choices.terms.reserve_floor_percent
                program_floor = max(program_floor, floor or 0.0)
                scope["openadr_program"] = openadr_program
            if aggregator is not None:
                found = await self.sep2.store.get_aggregator(aggregator)
                if found is None:
                    raise NotFound(f"no aggregator named {aggregator!r}")
                aggregator_id = found.id
                scope["aggregator"] = aggregator
            ids = None
            if group_ids is not None or aggregator_id is not None:
                ids = await store.select_fleet_ids(
                    s, group_ids=group_ids, aggregator_id=aggregator_id
                )
            devices = await self._inputs(s, ids, default)
            result = capacity_of(
                devices,
                now,
                duration=duration,
                program_floor=program_floor,
                hours=hours,
                socs=self.cache.forecast_socs,
            )
            flagged_ids = sorted(result.unavailable)[:FLAGGED_LISTED]
            lfdis = await store.select_lfdis(s, flagged_ids)
            error = None
            if with_error:  # the facts themselves, and 8 days of hours: read for this answer
                fleet = await store.select_der_facts(
                    s, device_ids=[d.device_id for d in devices], default_post_rate=default
                )
                first = (now // 86400 - 1) * 86400 // 3600 - 7 * 24 - 1
                samples = await store.select_hour_samples(s, [f.device_id for f in fleet], first)
                error = yesterday_error(fleet, samples, now, program_floor)
            vens = None
            if openadr_program is not None:
                vens = await self._granted_vens(
                    s, openadr_program, now, duration, program_floor, hours
                )
        flagged = {lfdis[d]: result.unavailable[d] for d in flagged_ids if d in lfdis}
        return CapacityReport(scope, result, flagged, error, vens)

    # ---- aggregators: their VENs' reports ----------------------------------------------------
    async def ven_capacity(
        self,
        ven_name: str,
        *,
        program_floor: float = 0.0,
        duration: int = 3600,
        hours: int = 24,
    ) -> VenReport:
        """A VEN's capacity above the program floor now and per hour ahead, from the
        STORAGE_* payloads of its latest reports (domain.ven_capacity)."""
        now = self.sep2.clock.now_int()
        async with self.sep2.store.transaction() as s:
            found = await oadr.query(s, VEN, name=ven_name)
            if not found:
                raise NotFound(f"no VEN named {ven_name!r}")
            (ven,) = found
            return await self._ven_report(s, ven, now, duration, program_floor, hours)

    async def _ven_report(
        self,
        s: Session,
        ven: StoredObject,
        now: int,
        duration: int,
        program_floor: float,
        hours: int,
    ) -> VenReport:
        """From the reports of the VEN's client; when that client has several VENs, only
        the report resources named as this VEN's resources are its own."""
        client = ven.client_id or ""
        names: set[str] | None = None
        if len(await oadr.query(s, VEN, client_ids=[client])) > 1:
            names = {r.name or "" for r in await oadr.query(s, RESOURCE, ven_ids=[ven.id])}
        values = []
        for report in await oadr.query(s, REPORT, client_ids=[client]):
            values += storage_values(report.body, report.modified_at, names)
        capacity = ven_capacity(
            values, now, duration=duration, program_floor=program_floor, hours=hours
        )
        return VenReport(ven.id, ven.name or "", capacity)

    async def _granted_vens(
        self,
        s: Session,
        program_id: str,
        now: int,
        duration: int,
        program_floor: float,
        hours: int,
    ) -> tuple[VenReport, ...]:
        """The VENs that may see the program (untargeted: every VEN; targeted: those whose
        own targets, or their resources', meet the program's), each with its capacity."""
        program = await oadr.get(s, PROGRAM, program_id)
        if program is None:
            return ()
        vens = await oadr.query(s, VEN)
        targets: dict[str, set[str]] = {v.id: set(v.targets) for v in vens}
        for resource in await oadr.query(s, RESOURCE, ven_ids=sorted(targets)):
            targets[resource.ven_id or ""] = targets.get(resource.ven_id or "", set()) | set(
                resource.targets
            )
        granted = [v for v in vens if targets_meet(program.targets, frozenset(targets[v.id]))]
        return tuple(
            [await self._ven_report(s, v, now, duration, program_floor, hours) for v in granted]
        )

    async def inputs_of(self, s: Session, ids: Sequence[int]) -> list[CapacityInputs]:
        """The capacity inputs of these devices, from memory (another service's unit of
        work reading the fleet: csip's own OpenADR reports)."""
        return await self._inputs(s, ids, await self.sep2.default_post_rate())

    async def _inputs(
        self, s: Session, ids: Sequence[int] | None, default_post_rate: int | None
    ) -> list[CapacityInputs]:
        """The capacity inputs of these devices (None: the whole fleet), from memory; read
        from the database only the first time, and then only the devices marked since."""
        cache = self.cache
        table = cache.devices
        if table is None:
            generation = cache.generation
            cache.dirty.clear()  # marks arriving during the read are re-read next time
            loaded = await store.select_capacity_inputs(s, default_post_rate=default_post_rate)
            cache.rows_read += len(loaded)
            table = {d.device_id: d for d in loaded}
            if generation == cache.generation:
                cache.devices = table
        missing = [] if ids is None else [i for i in ids if i not in table]
        if cache.dirty or missing:
            marked, cache.dirty = cache.dirty, set()
            wanted = marked.union(missing)
            fresh = await store.select_capacity_inputs(
                s, device_ids=sorted(wanted), default_post_rate=default_post_rate
            )
            cache.rows_read += len(fresh)
            kept = cache.schedules or {}
            for device in fresh:  # in place: the table stays in id order
                plan = kept.get(device.device_id)
                table[device.device_id] = device if plan is None else device._replace(schedule=plan)
            for gone in wanted.difference(d.device_id for d in fresh):
                table.pop(gone, None)
                cache.socs.pop(gone, None)
        await self._schedules(s, table)
        if ids is None:
            return list(table.values())
        return [table[i] for i in ids if i in table]

    async def _schedules(self, s: Session, table: dict[int, CapacityInputs]) -> None:
        """Attach each device's own setpoints ahead to its inputs (the forecast follows
        them): read again only when a program's controls changed or the hour turned, in one
        query of the per-device dispatch controls (none: nothing to attach)."""
        cache = self.cache
        now = self.sep2.clock.now_int()
        first = (now // 3600 + 1) * 3600
        if cache.schedules is not None and cache.schedules_for == first:
            return
        read = await store.select_device_setpoints(s, now - SCHEDULE_BEFORE, first + SCHEDULE_AHEAD)
        fresh = {d: tuple(plans) for d, plans in read.items()}
        before = cache.schedules
        touched = set(fresh) | (set(before) if before is not None else set())
        if before is None:  # entries read since may carry old ones
            touched |= {d for d, x in table.items() if x.schedule is not None}
        for d in touched:
            found = table.get(d)
            if found is not None and found.schedule != fresh.get(d):
                table[d] = found._replace(schedule=fresh.get(d))
        cache.schedules, cache.schedules_for = fresh, first
