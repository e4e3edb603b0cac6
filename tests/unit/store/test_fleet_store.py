"""The facts store (store/fleet.py, services/fleet.py write side) on SQLite and PostgreSQL:
a document PUT replaces its part only, the newest reading wins whatever order batches
arrive in, a retried batch is not counted twice in its hour, the hourly ring keeps 9 days, the
hour-of-day behaviour is recomputed once an hour, and the fleet is read by scope."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from lxml import etree

from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.fleet import DerFacts
from csip.domain.telemetry import (
    MeterReadingDraft,
    MirrorMeterReading,
    MirrorUsagePoint,
    Reading,
    ReadingType,
)
from csip.pki.identity import sfdi_from_lfdi
from csip.sep2 import schema
from csip.services import fleet
from csip.services.admin import AdminService, PreRegistration
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.programs import ProgramService
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.store import fleet as store

from support import BACKENDS

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'
H = 527_000  # an epoch hour
W = ReadingType(uom=38, power_of_ten_multiplier=0, kind=37, phase=0)
SOC = ReadingType(uom=0, power_of_ten_multiplier=-2, kind=0)
MUP = MirrorUsagePoint(
    1,
    1,
    "",
    "M",
    None,
    0x49,
    0,
    1,
    None,
    (MirrorMeterReading(1, "W", None, W), MirrorMeterReading(2, "SOC", None, SOC)),
)


@dataclasses.dataclass
class Env:
    sep2: Sep2Service
    admin: AdminService
    programs: ProgramService
    ids: dict[str, int]


@pytest_asyncio.fixture(loop_scope="session")
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    db = Store(database_url)
    await db.migrate()
    settings = Settings(data_dir=tmp_path)
    clock = Clock()
    sep2 = Sep2Service(
        db, settings, clock, schema.load(settings.profile), Changes(db, LocalBus(), clock)
    )
    admin = AdminService(sep2)
    await admin.create_aggregator("agg")
    lfdis = {name: secrets.token_hex(20).upper() for name in ("a", "b", "c")}
    await admin.preregister([PreRegistration(lfdis["a"], sfdi_from_lfdi(lfdis["a"]))])
    await admin.preregister(
        [PreRegistration(lfdis[n], sfdi_from_lfdi(lfdis[n]), aggregator="agg") for n in "bc"]
    )
    ids = {}
    for name, lfdi in lfdis.items():
        device = await db.get_end_device_by_lfdi(lfdi)
        assert device is not None
        ids[name] = device.id
    yield Env(sep2, admin, ProgramService(sep2), ids)
    await db.close()


def reading(value: int, start: int) -> Reading:
    return Reading(value=value, power_of_ten_multiplier=0, start=start, duration=60)


async def post(env: Env, device: int, *drafts: MeterReadingDraft, now: int) -> None:
    async with env.sep2.changes.unit_of_work() as tx:
        await fleet.record_readings(tx, device, MUP, drafts, now)


async def put(env: Env, device: int, xml: str, now: int) -> None:
    async with env.sep2.changes.unit_of_work() as tx:
        await fleet.record_document(tx, device, etree.fromstring(xml.encode()), now)


async def facts(env: Env, device: int) -> DerFacts:
    async with env.sep2.store.transaction() as s:
        (found,) = await store.select_der_facts(s, device_ids=[device])
    return found


def test_the_columns_read_are_derfacts_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(DerFacts)][1 : 1 + len(store._READ)]
    assert names == [n if n != "soc_at" else "soc_at_reading" for n in store._READ]


@BACKENDS
async def test_a_document_put_replaces_its_part_and_keeps_the_others(env: Env) -> None:
    a = env.ids["a"]
    assert await facts(env, a) == DerFacts(a)  # a device that posted nothing is in the fleet
    await put(
        env,
        a,
        f"<DERCapability {SEP}><modesSupported>00</modesSupported><rtgMaxW><multiplier>3"
        "</multiplier><value>5</value></rtgMaxW><rtgMaxWh><multiplier>2</multiplier><value>135"
        "</value></rtgMaxWh><type>83</type></DERCapability>",
        now=1000,
    )
    await put(
        env,
        a,
        f"<DERAvailability {SEP}><readingTime>1</readingTime><reservePercent>2500"
        "</reservePercent></DERAvailability>",
        now=1100,
    )
    await put(
        env,
        a,
        f"<DERCapability {SEP}><modesSupported>00</modesSupported><rtgMaxW><multiplier>0"
        "</multiplier><value>4000</value></rtgMaxW><type>83</type></DERCapability>",
        now=1200,
    )
    found = await facts(env, a)
    assert (found.rtg_max_w, found.rtg_max_wh, found.capability_at) == (4000.0, None, 1200)
    assert (found.reserve_percent, found.availability_at) == (25.0, 1100)


@BACKENDS
async def test_the_newest_reading_wins_and_a_retry_is_not_counted_twice(env: Env) -> None:
    a = env.ids["a"]
    t = H * 3600
    batch = MeterReadingDraft("W", readings=(reading(1000, t + 60), reading(3000, t + 120)))
    soc = MeterReadingDraft("SOC", readings=(reading(5000, t + 120),))
    await post(env, a, batch, soc, now=t + 200)
    await post(env, a, batch, now=t + 260)  # the device retried
    late = MeterReadingDraft("W", readings=(reading(7000, t + 30),))  # older, arrives late
    await post(env, a, late, now=t + 300)
    found = await facts(env, a)
    assert (found.w, found.w_at, found.soc, found.soc_at_reading) == (
        3000.0,
        t + 180,
        50.0,
        t + 180,
    )
    async with env.sep2.store.transaction() as s:
        (hour,) = (await store.select_hour_samples(s, [a]))[a]
    # the retry and the late reading (before the last one counted) are not added
    assert (hour.hour, hour.w_sum, hour.w_count, hour.soc) == (H, 4000.0, 2, 50.0)
    # the next hour adds; 9 days later the slot is reused, and an older hour cannot take it back
    await post(env, a, MeterReadingDraft("W", readings=(reading(-500, t + 3600),)), now=t + 3700)
    nine_days = 9 * 24 * 3600
    await post(
        env, a, MeterReadingDraft("W", readings=(reading(200, t + nine_days),)), now=t + nine_days
    )
    await post(
        env, a, MeterReadingDraft("W", readings=(reading(9, t + 5),)), now=t + nine_days + 60
    )
    async with env.sep2.store.transaction() as s:
        ring = (await store.select_hour_samples(s, [a]))[a]
    assert [(x.hour, x.w_sum, x.w_count) for x in ring] == [(H + 1, -500.0, 1), (H + 216, 200.0, 1)]


@BACKENDS
async def test_the_hour_of_day_behaviour_is_recomputed_when_an_hour_has_passed(env: Env) -> None:
    a = env.ids["a"]
    t = H * 3600
    await post(env, a, MeterReadingDraft("W", readings=(reading(1200, t - 3000),)), now=t - 2900)
    assert (await facts(env, a)).profile is None  # nothing before the hour in progress
    await post(env, a, MeterReadingDraft("W", readings=(reading(800, t - 2000),)), now=t - 1900)
    assert (await facts(env, a)).profile is None  # same hour: not recomputed
    await post(env, a, MeterReadingDraft("W", readings=(reading(50, t + 10),)), now=t + 100)
    profile = (await facts(env, a)).profile
    assert profile is not None
    assert profile[(H - 1) % 24] == pytest.approx(1000.0)
    assert sum(1 for v in profile if not math.isnan(v)) == 1


@BACKENDS
async def test_the_fleet_is_read_by_group_aggregator_or_whole(env: Env) -> None:
    a, b, c = env.ids["a"], env.ids["b"], env.ids["c"]
    group = await env.programs.create_group("feeder", None, None)
    lfdis = {d.id: d.lfdi for d in (await env.admin.end_devices(0, 10, None))[1]}
    await env.programs.add_members(group.id, [lfdis[a], lfdis[b]])
    agg = await env.sep2.store.get_aggregator("agg")
    assert agg is not None
    async with env.sep2.store.transaction() as s:
        everyone = await store.select_der_facts(s)
        grouped = await store.select_der_facts(s, group_ids=[group.id])
        managed = await store.select_der_facts(s, aggregator_id=agg.id)
    assert [f.device_id for f in everyone] == [a, b, c]
    assert [f.device_id for f in grouped] == [a, b]
    assert [f.device_id for f in managed] == [b, c]
    async with env.sep2.changes.unit_of_work() as tx:
        await store.update_site_reserve(tx.session, c, 35.0)
        await store.update_requested_post_rate(tx.session, c, 60)
    found = await facts(env, c)
    assert (found.site_reserve_percent, found.post_rate) == (35.0, 60)


@BACKENDS
async def test_an_openadr_program_s_capacity_uses_its_groups_and_reserve_floor(env: Env) -> None:
    from csip.domain.programs import ProgramTerms
    from csip.services.fleet import FleetService
    from csip.store import engine as engine_store

    a = env.ids["a"]
    now = env.sep2.clock.now_int()
    top = await env.programs.create_group("zone", None, None)
    below = await env.programs.create_group("feeder", None, top.id)
    lfdis = {d.id: d.lfdi for d in (await env.admin.end_devices(0, 10, None))[1]}
    await env.programs.add_members(below.id, [lfdis[a]])
    der_program = await env.programs.create_program(top.id, "peak", 5)
    await put(
        env,
        a,
        f"<DERCapability {SEP}><modesSupported>00</modesSupported><rtgMaxW><multiplier>3"
        "</multiplier><value>5</value></rtgMaxW><rtgMaxWh><multiplier>3</multiplier><value>10"
        "</value></rtgMaxWh><type>83</type></DERCapability>",
        now=now,
    )
    await put(
        env,
        a,
        f"<DERStatus {SEP}><readingTime>1</readingTime><stateOfChargeStatus><dateTime>1"
        "</dateTime><value>6000</value></stateOfChargeStatus></DERStatus>",
        now=now,
    )
    async with env.sep2.changes.unit_of_work() as tx:
        await engine_store.insert_enrollment(tx.session, "cbes", top.id, der_program.id, now)
        await engine_store.upsert_choices(
            tx.session,
            engine_store.ProgramChoices(
                "cbes", 5, {}, None, None, 0, "", ProgramTerms(reserve_floor_percent=40)
            ),
        )
    service = FleetService(env.sep2)
    report = await service.capacity(openadr_program="cbes")
    # enrolled at the zone, A is in the feeder below: (60 - 40) % of 10 kWh
    assert report.capacity.devices == 1 and report.capacity.program_floor == 40
    assert report.capacity.now.energy_wh == pytest.approx(2000)
    higher = await service.capacity(openadr_program="cbes", program_floor=50)
    assert higher.capacity.now.energy_wh == pytest.approx(1000)
