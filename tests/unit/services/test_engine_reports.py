"""The program engine's reports on SQLite, no sockets (issue 10 item 5): what devices of the
enrolled 2030.5 groups answer comes back as one OpenADR report per event, written by csip as
its own client, growing as intervals begin; BL clients read it, VENs do not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from csip.app import App
from csip.domain.devices import Principal as Device
from csip.domain.devices import PrincipalKind
from csip.openadr.rules import EVENT, REPORT, VEN, Principal
from csip.pki.identity import sfdi_from_lfdi
from csip.services.admin import PreRegistration
from csip.services.engine_reports import NOTHING, UNCHANGED, WRITTEN
from csip.services.vtn import ListQuery
from csip.store import der as der_store

from support import Pki, built_app

T0 = 2_000_000_000
BL = Principal(
    "bl-1", "bl", frozenset({"read_all", "write_programs", "write_events", "write_reports"})
)
VEN_CLIENT = Principal(
    "ven-1", "ven", frozenset({"read_targets", "read_ven_objects", "write_reports", "write_vens"})
)
LFDIS = [f"{n:02X}" * 20 for n in (0x11, 0x22, 0x33)]
NS = 'xmlns="urn:ieee:std:2030.5:ns"'
PEN = "0000A4F1"


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0) as built:
        await built.admin.preregister(
            [PreRegistration(lfdi, sfdi_from_lfdi(lfdi)) for lfdi in LFDIS]
        )
        yield built


def iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def device(lfdi: str) -> Device:
    return Device(lfdi, sfdi_from_lfdi(lfdi), PrincipalKind.DEVICE)


async def setup_program(app: App) -> tuple[str, dict[str, int]]:
    """A program, groups north (devices 0 and 1) and south (device 2), both enrolled."""
    body = {
        "programName": "cbes",
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT",
                "units": "KW",
            }
        ],
    }
    program = json.loads(await app.vtn.create(BL, "PROGRAM", json.dumps(body).encode()))
    der_programs = {}
    for name, members in (("north", LFDIS[:2]), ("south", LFDIS[2:])):
        group = await app.programs.create_group(name, "feeder", None)
        await app.engine.set_target(group.id, f"feeder-{name}")
        for lfdi in members:
            await app.programs.set_member(group.id, lfdi, True)
        enrollment = await app.engine.enroll(program["id"], group.id)
        der_programs[name] = enrollment.der_program_id
    return str(program["id"]), der_programs


async def post_event(app: App, program_id: str, **extra: Any) -> str:
    body = {
        "programID": program_id,
        "eventName": "peak",
        "intervalPeriod": {"start": iso(T0 + 3600), "duration": "PT1H"},
        "intervals": [
            {"id": i, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [kw]}]}
            for i, kw in enumerate([5.0, 2.5])
        ],
        **extra,
    }
    created = json.loads(await app.vtn.create(BL, EVENT, json.dumps(body).encode()))
    return str(created["id"])


ASK = {"reportDescriptors": [{"payloadType": "DEMAND", "readingType": "MEAN", "units": "KW"}]}


async def answer(app: App, lfdi: str, der_program_id: int, status: int) -> None:
    async with app.store.transaction() as s:
        controls = await der_store.select_controls(s, [der_program_id])
    first = min(controls, key=lambda c: c.start)
    body = (
        f"<DERControlResponse {NS}><createdDateTime>{app.clock.now_int()}</createdDateTime>"
        f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status>"
        f"<subject>{first.mrid}</subject></DERControlResponse>"
    )
    await app.programs.post_response(device(lfdi), der_program_id, body.encode())


async def mirror(app: App, lfdi: str, watts: int, soc: int, at: int) -> None:
    """A DER mirror with active power (W) and state of charge (%) readings."""

    def mmr(n: int, uom: int, value: int) -> str:
        return (
            f"<MirrorMeterReading><mRID>{n:024X}{PEN}</mRID>"
            f"<Reading><timePeriod><duration>60</duration><start>{at}</start></timePeriod>"
            f"<value>{value}</value></Reading>"
            f"<ReadingType><kind>37</kind><powerOfTenMultiplier>0</powerOfTenMultiplier>"
            f"<uom>{uom}</uom></ReadingType></MirrorMeterReading>"
        )

    number = LFDIS.index(lfdi)
    body = (
        f"<MirrorUsagePoint {NS}><mRID>{number + 1:024X}{PEN}</mRID><description>der</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind>"
        f"<status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"{mmr(10 * number + 1, 38, watts)}{mmr(10 * number + 2, 0, soc)}</MirrorUsagePoint>"
    )
    await app.telemetry.post_mup(device(lfdi), body.encode())


async def reports(app: App, event_id: str, who: Principal = BL) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        await app.vtn.list_objects(who, REPORT, ListQuery(event_id=event_id))
    )
    return found


def figures(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {p["type"]: p["values"][0] for p in interval["payloads"]}
        for interval in resource["intervals"]
    ]


async def test_answers_and_readings_become_one_report_per_event_that_grows(app: App) -> None:
    program_id, der_programs = await setup_program(app)
    event_id = await post_event(app, program_id, **ASK)
    assert await app.reports.refresh(event_id) == NOTHING  # no interval has begun

    app.clock.set(T0 + 3600 + 60)
    await answer(app, LFDIS[0], der_programs["north"], 1)
    await answer(app, LFDIS[0], der_programs["north"], 2)  # the latest answer counts
    await answer(app, LFDIS[1], der_programs["north"], 4)  # opted out
    await mirror(app, LFDIS[0], 3000, 80, T0 + 3600 + 30)
    await mirror(app, LFDIS[1], 1000, 40, T0 + 3600 + 30)
    assert await app.reports.refresh(event_id) == WRITTEN

    (report,) = await reports(app, event_id)
    assert report["clientID"] == "csip" and report["clientName"] == "csip"
    assert report["eventID"] == event_id
    by_name = {r["resourceName"]: r for r in report["resources"]}
    assert set(by_name) == {"feeder-north", "feeder-south"}
    assert figures(by_name["feeder-north"]) == [
        {
            "X_CSIP_DEVICES": 2,
            "X_CSIP_RESPONSES_STARTED": 1,
            "X_CSIP_RESPONSES_OPTED_OUT": 1,
            "DEMAND": 4.0,
            "STORAGE_CHARGE_LEVEL": 0.6,
        }
    ]
    assert figures(by_name["feeder-south"]) == [{"X_CSIP_DEVICES": 1}]
    (interval,) = by_name["feeder-north"]["intervals"]
    assert interval["id"] == 0
    assert interval["intervalPeriod"] == {"start": iso(T0 + 3600), "duration": "PT3600S"}
    descriptors = {d["payloadType"]: d for d in report["payloadDescriptors"]}
    assert descriptors["DEMAND"]["units"] == "KW"
    assert descriptors["STORAGE_CHARGE_LEVEL"]["units"] == "PERCENT"

    assert await app.reports.refresh(event_id) == UNCHANGED  # nothing new: nothing written

    app.clock.set(T0 + 7200 + 10)  # the second interval begins: the same report grows
    assert await app.reports.refresh(event_id) == WRITTEN
    (grown,) = await reports(app, event_id)
    assert grown["id"] == report["id"]
    north = next(r for r in grown["resources"] if r["resourceName"] == "feeder-north")
    assert [i["id"] for i in north["intervals"]] == [0, 1]
    # the responses answered the first control, which carries only interval 0
    assert figures(north)[1] == {"X_CSIP_DEVICES": 2}


async def test_the_clock_drives_the_report_without_any_write(app: App) -> None:
    program_id, _ = await setup_program(app)
    event_id = await post_event(app, program_id, **ASK)
    assert await app.reports.run_once() == []
    app.clock.set(T0 + 3600 + 1)
    assert await app.reports.run_once() == [event_id]  # the first interval began
    app.clock.set(T0 + 7200 + 1)
    assert await app.reports.run_once() == [event_id]  # the second one
    (report,) = await reports(app, event_id)
    assert all(len(r["intervals"]) == 2 for r in report["resources"])


async def test_an_event_rewritten_in_its_window_is_reported_at_once(app: App) -> None:
    program_id, _ = await setup_program(app)
    event_id = await post_event(app, program_id, **ASK)
    app.clock.set(T0 + 3600 + 1)
    assert await app.reports.run_once() == [event_id]
    assert await app.reports.run_once() == []  # nothing new
    body = json.loads(await app.vtn.get_object(BL, EVENT, event_id))
    body["intervalPeriod"]["duration"] = "PT30M"
    await app.vtn.update(BL, EVENT, event_id, json.dumps(body).encode())
    assert await app.reports.run_once() == [event_id]  # no debounce wait for a rewrite
    (report,) = await reports(app, event_id)
    (interval,) = report["resources"][0]["intervals"]
    assert interval["intervalPeriod"]["duration"] == "PT1800S"


async def test_an_event_without_report_descriptors_gets_no_report(app: App) -> None:
    program_id, _ = await setup_program(app)
    event_id = await post_event(app, program_id)
    app.clock.set(T0 + 3600 + 1)
    assert await app.reports.run_once() == []
    assert await app.reports.refresh(event_id) == NOTHING
    assert await reports(app, event_id) == []


async def test_targets_narrow_and_aggregate_merges_the_groups(app: App) -> None:
    program_id, _ = await setup_program(app)
    narrowed = await post_event(
        app, program_id, reportDescriptors=[{"payloadType": "DEMAND", "targets": ["feeder-south"]}]
    )
    merged = await post_event(
        app, program_id, reportDescriptors=[{"payloadType": "DEMAND", "aggregate": True}]
    )
    app.clock.set(T0 + 3600 + 60)
    await mirror(app, LFDIS[0], 3000, 80, T0 + 3600 + 30)
    await mirror(app, LFDIS[2], 500, 20, T0 + 3600 + 30)
    assert await app.reports.refresh(narrowed) == WRITTEN
    assert await app.reports.refresh(merged) == WRITTEN
    (only_south,) = (await reports(app, narrowed))[0]["resources"]
    assert only_south["resourceName"] == "feeder-south"
    assert figures(only_south) == [
        {"X_CSIP_DEVICES": 1, "DEMAND": 0.5, "STORAGE_CHARGE_LEVEL": 0.2}
    ]
    (everyone,) = (await reports(app, merged))[0]["resources"]
    assert everyone["resourceName"] == "AGGREGATED_REPORT"
    assert figures(everyone) == [{"X_CSIP_DEVICES": 3, "DEMAND": 3.5, "STORAGE_CHARGE_LEVEL": 0.5}]


async def test_vens_do_not_see_csip_reports_and_keep_their_own(app: App) -> None:
    program_id, _ = await setup_program(app)
    event_id = await post_event(app, program_id, **ASK)
    ven = {"objectType": "VEN_VEN_REQUEST", "venName": "aggregator-1"}
    await app.vtn.create(VEN_CLIENT, VEN, json.dumps(ven).encode())
    own = {
        "eventID": event_id,
        "clientName": "aggregator-1",
        "resources": [
            {
                "resourceName": "site",
                "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1.5]}]}],
            }
        ],
    }
    await app.vtn.create(VEN_CLIENT, REPORT, json.dumps(own).encode())
    app.clock.set(T0 + 3600 + 60)
    assert await app.reports.refresh(event_id) == WRITTEN
    seen_by_ven = await reports(app, event_id, VEN_CLIENT)
    assert [r["clientName"] for r in seen_by_ven] == ["aggregator-1"]
    assert seen_by_ven[0]["resources"] == own["resources"]
    assert sorted(r["clientName"] for r in await reports(app, event_id)) == [
        "aggregator-1",
        "csip",
    ]


async def test_a_report_the_bl_deleted_stays_deleted(app: App) -> None:
    program_id, der_programs = await setup_program(app)
    event_id = await post_event(app, program_id, **ASK)
    app.clock.set(T0 + 3600 + 60)
    assert await app.reports.refresh(event_id) == WRITTEN
    (report,) = await reports(app, event_id)
    await app.vtn.delete(BL, REPORT, report["id"])
    await answer(app, LFDIS[0], der_programs["north"], 2)
    assert await app.reports.refresh(event_id) == NOTHING
    assert await reports(app, event_id) == []


def test_no_external_token_may_claim_csips_client_id() -> None:
    import jwt

    from csip.services.vtn_auth import VtnAuth

    with pytest.raises(jwt.InvalidTokenError, match="csip"):
        VtnAuth._external_principal({"client_id": "csip", "scope": "read_targets"})
    assert VtnAuth._external_principal({"client_id": "fleet", "scope": ""}).client_id == "fleet"


async def capability(app: App, lfdi: str, kw: int, kwh: int) -> None:
    """The battery's DERCapability, as the device PUTs it: rtgMaxW (charge and discharge
    limit, no separate rates) and rtgMaxWh."""
    found = await app.sep2.store.get_end_device_by_lfdi(lfdi)
    assert found is not None
    xml = (
        f"<DERCapability {NS}><modesSupported>00500040</modesSupported>"
        f"<rtgMaxW><multiplier>3</multiplier><value>{kw}</value></rtgMaxW>"
        f"<rtgMaxWh><multiplier>3</multiplier><value>{kwh}</value></rtgMaxWh>"
        "<type>83</type></DERCapability>"
    )
    await app.der_device.put_der_document(device(lfdi), found.id, 1, "dercap", xml.encode())


STORAGE_ASKED = {
    "reportDescriptors": [
        {"payloadType": kind}
        for kind in (
            "STORAGE_USABLE_CAPACITY",
            "STORAGE_DISPATCH_FORECAST",
            "STORAGE_MAX_DISCHARGE_POWER",
            "STORAGE_MAX_CHARGE_POWER",
        )
    ]
}


async def test_storage_payloads_asked_for_carry_each_groups_capacity(app: App) -> None:
    program_id, _ = await setup_program(app)
    event_id = await post_event(app, program_id, **STORAGE_ASKED)
    await capability(app, LFDIS[0], 5, 10)  # north: 10 kWh, 5 kW
    await capability(app, LFDIS[1], 3, 20)  # north: 20 kWh, 3 kW; south's battery gave none
    app.clock.set(T0 + 3600 + 60)
    await mirror(app, LFDIS[0], 3000, 80, T0 + 3600 + 30)
    await mirror(app, LFDIS[1], 1000, 40, T0 + 3600 + 30)
    await mirror(app, LFDIS[2], 500, 20, T0 + 3600 + 30)
    assert await app.reports.refresh(event_id) == WRITTEN

    (report,) = await reports(app, event_id)
    by_name = {r["resourceName"]: r for r in report["resources"]}
    # north, no reserve floor nor device reserve: usable 10 + 20 = 30 kWh; above reserve
    # 80 % of 10 + 40 % of 20 = 16 kWh; for the 1 h interval, discharge min(5, 8) +
    # min(3, 8) = 8 kW; charge min(5, 2 kWh to full) + min(3, 12) = 5 kW
    storage = {
        "STORAGE_USABLE_CAPACITY": 30.0,
        "STORAGE_DISPATCH_FORECAST": 16.0,
        "STORAGE_MAX_DISCHARGE_POWER": 8.0,
        "STORAGE_MAX_CHARGE_POWER": 5.0,
    }
    (first,) = figures(by_name["feeder-north"])
    assert {k: first[k] for k in storage} == storage
    # south's battery posted no ratings: no capacity can be counted, none is reported
    assert not set(figures(by_name["feeder-south"])[0]) & set(storage)
    descriptors = {d["payloadType"]: d for d in report["payloadDescriptors"]}
    assert descriptors["STORAGE_USABLE_CAPACITY"]["units"] == "KWH"
    assert descriptors["STORAGE_DISPATCH_FORECAST"]["readingType"] == "FORECAST"
    assert descriptors["STORAGE_MAX_DISCHARGE_POWER"]["units"] == "KW"

    # the second interval: the batteries drained; the first keeps what it was reported with
    app.clock.set(T0 + 7200 + 10)
    await mirror(app, LFDIS[0], 3000, 50, T0 + 7200 + 5)
    await mirror(app, LFDIS[1], 1000, 30, T0 + 7200 + 5)
    assert await app.reports.refresh(event_id) == WRITTEN
    (grown,) = await reports(app, event_id)
    north = next(r for r in grown["resources"] if r["resourceName"] == "feeder-north")
    was, now = figures(north)
    assert {k: was[k] for k in storage} == storage
    # 5 + 6 = 11 kWh; discharge min(5, 5) + min(3, 6) = 8 kW; charge min(5, 5) + min(3, 14)
    assert {k: now[k] for k in storage} == {
        "STORAGE_USABLE_CAPACITY": 30.0,
        "STORAGE_DISPATCH_FORECAST": 11.0,
        "STORAGE_MAX_DISCHARGE_POWER": 8.0,
        "STORAGE_MAX_CHARGE_POWER": 8.0,
    }
