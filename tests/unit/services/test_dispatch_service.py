"""Per-device dispatch on SQLite, no sockets (issue 12 items 3-4): a per-device program's
DISPATCH_SETPOINT becomes one control per battery in its own, more important program, shared
above each reserve, with the shortfall kept; an opt-out re-plans the others with superseding
controls, at most once per 15 minutes per device; stale devices are flagged and get nothing.

Facts are written with the same store functions the device-facing posts use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from csip.app import App
from csip.domain.der import Status, event_statuses
from csip.domain.devices import Principal as Device
from csip.domain.devices import PrincipalKind
from csip.domain.fleet import Capability
from csip.domain.fleet import Status as DerStatus
from csip.domain.programs import ProgramTerms
from csip.openadr.rules import EVENT, PROGRAM, Principal
from csip.pki.identity import sfdi_from_lfdi
from csip.services.admin import PreRegistration
from csip.store import der as der_store
from csip.store import dispatch as dispatch_store
from csip.store import fleet as fleet_store
from csip.store.engine import ProgramChoices

from support import Pki, built_app

T0 = 2_000_000_000
START = T0 + 3600
BL = Principal("bl-1", "bl", frozenset({"read_all", "write_programs", "write_events"}))
A, B, C = ("A" * 40, "B" * 40, "C" * 40)


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0, dispatch_watch=False) as built:
        yield built


def iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def device_ids(app: App) -> dict[str, int]:
    found = {}
    for lfdi in (A, B, C):
        device = await app.sep2.store.get_end_device_by_lfdi(lfdi)
        assert device is not None
        found[lfdi] = device.id
    return found


async def battery(app: App, lfdi: str, wh: float, w: float, soc: float, at: int) -> None:
    ids = await device_ids(app)
    async with app.changes.unit_of_work() as tx:
        cap = Capability(rtg_max_w=w, rtg_max_wh=wh, rtg_max_discharge_rate_w=w)
        await fleet_store.update_der_document_facts(tx.session, ids[lfdi], cap, at)
        await fleet_store.update_der_document_facts(
            tx.session, ids[lfdi], DerStatus(state_of_charge=soc), at
        )


async def setup(app: App) -> tuple[str, int]:
    await app.admin.preregister([PreRegistration(x, sfdi_from_lfdi(x)) for x in (A, B, C)])
    group = await app.programs.create_group("homes", "feeder", None)
    await app.programs.add_members(group.id, [A, B, C])
    body = {
        "programName": "cbes",
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "DISPATCH_SETPOINT",
             "units": "KW"}
        ],
    }  # fmt: skip
    program_id = json.loads(await app.vtn.create(BL, PROGRAM, json.dumps(body).encode()))["id"]
    await app.engine.set_choices(
        ProgramChoices(
            program_id,
            10,
            {},
            None,
            None,
            3600,
            "utility",
            ProgramTerms(reserve_floor_percent=20.0),
            "per-device",
        )
    )
    enrollment = await app.engine.enroll(program_id, group.id)
    # A: 10 kWh at 80 % (6 kWh above 20 %), 5 kW; B: 5 kWh at 50 % (1.5 kWh), 3 kW;
    # C: posted too long ago (stale: older than twice its 300 s postRate)
    await battery(app, A, 10_000, 5000, 80.0, T0)
    await battery(app, B, 5000, 3000, 50.0, T0)
    await battery(app, C, 10_000, 5000, 90.0, T0 - 3600)
    return program_id, enrollment.der_program_id


def event_body(program_id: str, kws: list[float]) -> bytes:
    return json.dumps(
        {
            "programID": program_id,
            "eventName": "peak",
            "intervalPeriod": {"start": iso(START), "duration": "PT1H"},
            "intervals": [
                {"id": i, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [kw]}]}
                for i, kw in enumerate(kws)
            ],
        }
    ).encode()


async def device_controls(app: App, lfdi: str) -> list[tuple[int, int, int, Status]]:
    """(start, duration, W, status) of the controls in the device's own program(s)."""
    ids = await device_ids(app)
    async with app.store.transaction() as s:
        groups = await der_store.select_groups(s)
        direct = (await der_store.select_memberships(s, [ids[lfdi]]))[ids[lfdi]]
        own = [g for g in direct if groups[g].level == "device"]
        programs = [p.id for g in own for p in await der_store.select_programs(s, g)]
        controls = await der_store.select_controls(s, programs)
    statuses = event_statuses(controls, app.clock.now_int())
    return sorted(
        (
            c.start,
            c.duration,
            c.base["opModTargetW"]["value"] * 10 ** c.base["opModTargetW"]["multiplier"],
            statuses[c.id].current,
        )
        for c in controls
    )


def by_lfdi(view: dict[str, Any]) -> dict[str, Any]:
    (group,) = view["groups"]
    return {d["lfdi"]: d for d in group["devices"].values()}


async def test_shared_above_reserve_with_the_shortfall_kept(app: App) -> None:
    program_id, group_program = await setup(app)
    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [6.0, 20.0])))

    # interval 0: A can give 5000 W, B 1500 W (1.5 kWh over the hour): 6000 W pro rata
    # 5000:1500 -> 4615 + 1385. Interval 1: what is left above reserve, 1385 Wh and 115 Wh.
    assert await device_controls(app, A) == [
        (START, 3600, 4615, Status.SCHEDULED),
        (START + 3600, 3600, 1385, Status.SCHEDULED),
    ]
    assert await device_controls(app, B) == [
        (START, 3600, 1385, Status.SCHEDULED),
        (START + 3600, 3600, 115, Status.SCHEDULED),
    ]
    assert await device_controls(app, C) == []  # stale: nothing, and flagged
    # the group's own program carries no group-wide target
    async with app.store.transaction() as s:
        assert await der_store.select_controls(s, [group_program]) == []

    view = await app.dispatch.explain(event["id"])
    (group,) = view["groups"]
    figures = [
        (i["target_w"], i["available_w"], i["allocated_w"], i["shortfall_w"])
        for i in group["intervals"]
    ]
    assert figures == [(6000, 6500, 6000, 0), (20000, 1500, 1500, 18500)]
    devices = by_lfdi(view)
    assert devices[C]["status"] == "unavailable"
    assert "older than twice" in devices[C]["reason"]
    assert devices[A]["inputs"]["reserve_percent"] == 20.0
    assert devices[A]["inputs"]["soc_percent"] == 80.0
    assert 0 <= devices[A]["inputs"]["data_age_s"] <= app.clock.now_int() - T0
    assert devices[B]["setpoints"] == {"0": 1385, "1": 115}


async def test_an_opt_out_re_plans_the_others_at_most_every_15_minutes(app: App) -> None:
    program_id, _ = await setup(app)
    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [6.0, 1.0])))
    ids = await device_ids(app)
    moment = START + 1200
    app.clock.set(moment)
    # fresh state of charge: A 70 % (5 kWh above reserve), B 45 %
    await battery(app, A, 10_000, 5000, 70.0, moment)
    await battery(app, B, 5000, 3000, 45.0, moment)
    assert await app.dispatch.check(event["id"]) == {}  # nobody short: no change

    async with app.changes.unit_of_work() as tx:
        links = await dispatch_store.select_device_controls(tx.session, event["id"])
        mine = next(c for c in links if c.device_id == ids[B] and c.control.start == START)
        await der_store.insert_response(tx.session, mine.control.id, ids[B], B, 4, moment, moment)

    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{B: "opted out"}]
    # A now gives what B no longer does, within what it can: 5000 W for the 40 minutes left
    # (5 kWh above reserve would allow 7500 W; its limit is 5000 W): 1000 W short
    got = await device_controls(app, A)
    (active,) = [c for c in got if c[3] is Status.ACTIVE]
    assert moment <= active[0] <= app.clock.now_int()  # from the re-plan on (the clock runs)
    assert (active[0] + active[1], active[2]) == (START + 3600, 5000)
    assert (START, 3600, 4615, Status.SUPERSEDED) in got
    assert {c[3] for c in await device_controls(app, B)} == {Status.CANCELLED}
    view = await app.dispatch.explain(event["id"])
    (group,) = view["groups"]
    assert group["intervals"][0]["shortfall_w"] == 1000
    assert by_lfdi(view)[B]["status"] == "opted out"
    assert group["replans"][-1]["why"] == {B: "opted out"}

    # C comes back 5 minutes later: it may be planned (it never was), A may not (too soon)
    app.clock.set(moment + 300)
    await battery(app, A, 10_000, 5000, 65.0, moment + 300)
    await battery(app, C, 10_000, 5000, 90.0, moment + 300)
    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{C: "available again"}]
    assert [c for c in await device_controls(app, A) if c[3] is Status.ACTIVE] == [active]
    (c_now,) = [c for c in await device_controls(app, C) if c[3] is Status.ACTIVE]
    assert (c_now[0] + c_now[1], c_now[2]) == (START + 3600, 1000)


# ---- the re-plan triggers, driven through the device-facing write path ------------------------
NS = 'xmlns="urn:ieee:std:2030.5:ns"'
PEN = "0000A4F1"


def device(lfdi: str) -> Device:
    return Device(lfdi, sfdi_from_lfdi(lfdi), PrincipalKind.DEVICE)


async def post(app: App, lfdi: str, at: int, *, watts: int | None = None, soc: int) -> None:
    """What a battery posts at its postRate: a DER MirrorUsagePoint (POST /mup, declared the
    first time) and then its readings (POST /mup/{id}): active power (W, optional) and state
    of charge (%), both starting at `at`."""
    number = (A, B, C).index(lfdi) + 1

    def mmr(kind: int, uom: int, value: int | None) -> str:
        reading = (
            ""
            if value is None
            else f"<Reading><timePeriod><duration>60</duration><start>{at}</start></timePeriod>"
            f"<value>{value}</value></Reading>"
        )
        return (
            f"<MirrorMeterReading><mRID>{10 * number + kind:024X}{PEN}</mRID>{reading}"
            f"<ReadingType><kind>37</kind><powerOfTenMultiplier>0</powerOfTenMultiplier>"
            f"<uom>{uom}</uom></ReadingType></MirrorMeterReading>"
        )

    body = (
        f"<MirrorUsagePoint {NS}><mRID>{number:024X}{PEN}</mRID><description>der</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind>"
        f"<status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"{mmr(1, 38, watts)}{mmr(2, 0, soc)}</MirrorUsagePoint>"
    )
    await app.telemetry.post_mup(device(lfdi), body.encode())


async def active(app: App, lfdi: str) -> tuple[int, int, int, Status] | None:
    found = [c for c in await device_controls(app, lfdi) if c[3] is Status.ACTIVE]
    assert len(found) <= 1
    return found[0] if found else None


async def test_a_battery_delivering_under_80_percent_for_two_posts_is_re_planned(
    app: App,
) -> None:
    program_id, _ = await setup(app)
    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [6.0, 1.0])))
    # planned at T0: A 4615 W, B 1385 W for the first hour
    app.clock.set(START + 300)
    await post(app, A, START + 300, watts=3000, soc=77)  # 3000 W < 80 % of 4615 (3692)
    await post(app, B, START + 300, watts=1385, soc=48)
    assert await app.dispatch.check(event["id"]) == {}  # one post under is not a trend

    moment = START + 600
    app.clock.set(moment)
    await post(app, A, moment, watts=3000, soc=75)  # the second post under
    await post(app, B, moment, watts=1385, soc=48)
    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{A: "delivered under 80 % of its setpoint for two posts"}]
    # Each device is planned from where it will be when it hears the new control: its old
    # setpoint for one DERProgramList pollRate (300 s) more. A: 75 - 4615 W x 300 s / 10 kWh
    # = 71.154 %, 5115.4 Wh above reserve, 6138 W over the 3000 s left, but trusted with no
    # more than the 3000 W it measured. B: 48 - 1385 W x 300 s / 5 kWh = 45.692 %, 1284.6 Wh,
    # 1541 W over 3000 s. 6000 W asked, 4541 W given, 1459 W short.
    a_now, b_now = await active(app, A), await active(app, B)
    assert a_now is not None and b_now is not None
    assert (a_now[0] + a_now[1], a_now[2]) == (START + 3600, 3000)
    assert (b_now[0] + b_now[1], b_now[2]) == (START + 3600, 1541)
    assert (START, 3600, 4615, Status.SUPERSEDED) in await device_controls(app, A)
    view = await app.dispatch.explain(event["id"])
    (group,) = view["groups"]
    assert group["intervals"][0]["shortfall_w"] == 1459
    assert by_lfdi(view)[A]["cap_w"] == 3000.0
    assert by_lfdi(view)[A]["status"] == "re-planned"


async def test_a_battery_heading_below_its_reserve_is_re_planned_once_per_15_minutes(
    app: App,
) -> None:
    program_id, _ = await setup(app)
    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [6.0, 1.0])))
    moment = START + 600
    app.clock.set(moment)
    # B drained faster than planned: at 30 %, 1385 W for the 3000 s left would take it to
    # 30 - 23.08 = 6.9 %, far below its 20 % reserve
    await post(app, A, moment, watts=4615, soc=75)
    await post(app, B, moment, watts=1385, soc=30)
    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{B: "state of charge heading below its reserve"}]
    # B from where it will be in 300 s: 30 - 2.308 = 27.692 %, 384.6 Wh above reserve,
    # 461 W over 3000 s. A (71.154 %, as above) gives its 5000 W limit: 539 W short.
    a_now, b_now = await active(app, A), await active(app, B)
    assert a_now is not None and b_now is not None
    assert (a_now[2], b_now[2]) == (5000, 461)
    (group,) = (await app.dispatch.explain(event["id"]))["groups"]
    assert group["intervals"][0]["shortfall_w"] == 539

    # 5 minutes later B still sinks: it is named, but keeps the setpoint it got (too soon)
    app.clock.set(moment + 300)
    await post(app, A, moment + 300, watts=5000, soc=71)
    await post(app, B, moment + 300, watts=461, soc=21)
    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{B: "state of charge heading below its reserve"}]
    assert await active(app, B) == b_now
    assert await active(app, A) == a_now  # A was re-planned 5 minutes ago too

    # 15 minutes after its re-plan, B may be re-planned again: it gets what is left above
    # its reserve (21 % less 461 W for 300 s more = 20.232 %: 11.6 Wh, 19 W over 2100 s)
    later = moment + 900
    app.clock.set(later)
    await post(app, A, later, watts=5000, soc=67)
    await post(app, B, later, watts=461, soc=21)
    replanned = await app.dispatch.check(event["id"])
    assert list(replanned.values()) == [{B: "state of charge heading below its reserve"}]
    b_later = await active(app, B)
    assert b_later is not None and b_later != b_now
    assert b_later[0] >= later and b_later[2] < 461


async def test_answers_to_devices_own_controls_count_in_csips_report(app: App) -> None:
    from csip.openadr.rules import REPORT
    from csip.services.vtn import ListQuery

    program_id, _ = await setup(app)
    body = json.loads(event_body(program_id, [6.0, 1.0]))
    body["reportDescriptors"] = [{"payloadType": "DEMAND", "readingType": "MEAN", "units": "KW"}]
    event = json.loads(await app.vtn.create(BL, EVENT, json.dumps(body).encode()))
    ids = await device_ids(app)
    async with app.store.transaction() as s:
        links = await dispatch_store.select_device_controls(s, event["id"])
    app.clock.set(START + 60)
    for lfdi, status in ((A, 2), (B, 4)):  # A started, B opted out, each to its own control
        (mine,) = [c for c in links if c.device_id == ids[lfdi] and c.control.start == START]
        response = (
            f"<DERControlResponse {NS}><createdDateTime>{START + 60}</createdDateTime>"
            f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status>"
            f"<subject>{mine.control.mrid}</subject></DERControlResponse>"
        )
        await app.programs.post_response(device(lfdi), mine.control.program_id, response.encode())
    await app.reports.refresh(event["id"])
    found = json.loads(await app.vtn.list_objects(BL, REPORT, ListQuery(event_id=event["id"])))
    (report,) = found
    (resource,) = report["resources"]
    (first,) = resource["intervals"]
    counts = {p["type"]: p["values"][0] for p in first["payloads"]}
    assert counts["X_CSIP_DEVICES"] == 3
    assert counts["X_CSIP_RESPONSES_STARTED"] == 1
    assert counts["X_CSIP_RESPONSES_OPTED_OUT"] == 1


async def test_the_forecast_follows_each_batterys_own_setpoints(app: App) -> None:
    program_id, _ = await setup(app)
    group = min(await app.programs.groups())
    before = await app.fleet.capacity(group_id=group, program_floor=20, hours=4)
    # no history, no event: A's 6000 Wh and B's 1500 Wh above reserve hold all day
    assert {round(p.energy_wh, 3) for p in before.capacity.forecast} == {7500.0}

    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [6.0, 20.0])))
    after = await app.fleet.capacity(group_id=group, program_floor=20, hours=4)
    at = [p.at for p in after.capacity.forecast]
    assert at == [T0 + 1600, T0 + 5200, T0 + 8800, T0 + 12400]  # whole hours after T0
    energy = [round(p.energy_wh, 3) for p in after.capacity.forecast]
    # T0+1600: before the event, unchanged. T0+5200, 1600 s into the first hour: A gave
    # 4615 W x 1600 s = 2051.111 Wh, B 1385 W x 1600 s = 615.556 Wh: 7500 - 2666.667.
    # T0+8800, 1600 s into the second: A 4615 Wh + 1385 x 1600 s (615.556), B 1385 Wh + 115 x
    # 1600 s (51.111): 7500 - 6666.667. After the event (T0+12400) all was lent: 0.
    assert energy == [7500.0, 4833.333, 833.333, 0.0]
    assert after.capacity.now.energy_wh == pytest.approx(7500.0)

    await app.vtn.delete(BL, EVENT, event["id"])  # its controls cancelled: habit again
    cancelled = await app.fleet.capacity(group_id=group, program_floor=20, hours=4)
    assert {round(p.energy_wh, 3) for p in cancelled.capacity.forecast} == {7500.0}
