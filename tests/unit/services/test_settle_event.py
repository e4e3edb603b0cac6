"""Settlement of one event (issue 12 item 7) on SQLite, no sockets, with the expected kWh
worked out by hand below. Times are America/Los_Angeles (the default zone)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from csip.app import App
from csip.domain.devices import Principal as DevicePrincipal
from csip.domain.devices import PrincipalKind
from csip.openadr.rules import EVENT, PROGRAM, REPORT, Principal
from csip.pki.identity import sfdi_from_lfdi
from csip.services.admin import PreRegistration
from csip.store import engine as engine_store

from support import Pki, built_app

LA = ZoneInfo("America/Los_Angeles")
A = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
B = "1C3F45AB31EDFE5B67E343E5E4562E31984E23E7"
BL = Principal("bl", "bl", frozenset({"read_all", "write_programs", "write_events"}))
VEN = Principal("ven-1", "ven", frozenset({"read_targets", "read_ven_objects", "write_reports"}))
NS = 'xmlns="urn:ieee:std:2030.5:ns"'


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=LA).timestamp())


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, at("2031-07-15T09:00")) as built:
        yield built


def device(lfdi: str) -> DevicePrincipal:
    return DevicePrincipal(lfdi, sfdi_from_lfdi(lfdi), PrincipalKind.DEVICE)


async def mirror(app: App, lfdi: str, readings: list[tuple[str, int]]) -> None:
    """A site MirrorUsagePoint with one total-W MirrorMeterReading, and its readings."""
    mrid = lfdi[:24] + "00000001"
    body = (
        f"<MirrorUsagePoint {NS}><mRID>{lfdi[:24]}00000002</mRID><description>site</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mrid}</mRID>"
        "<ReadingType><dataQualifier>2</dataQualifier><kind>37</kind><phase>0</phase>"
        "<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>38</uom></ReadingType>"
        "</MirrorMeterReading></MirrorUsagePoint>"
    )
    result = await app.telemetry.post_mup(device(lfdi), body.encode())
    for when, watts in readings:
        reading = (
            f"<MirrorMeterReading {NS}><mRID>{mrid}</mRID><Reading><timePeriod>"
            f"<duration>60</duration><start>{at(when)}</start></timePeriod>"
            f"<value>{watts}</value></Reading></MirrorMeterReading>"
        )
        await app.telemetry.post_readings(device(lfdi), result.mup.id, reading.encode())


async def test_settlement_matches_the_hand_computation(app: App) -> None:
    await app.admin.preregister([PreRegistration(x, sfdi_from_lfdi(x)) for x in (A, B)])
    group = await app.programs.create_group("feeder", "feeder", None)
    for lfdi in (A, B):
        await app.programs.set_member(group.id, lfdi, True)
    program = json.loads(await app.vtn.create(BL, PROGRAM, b'{"programName": "cbes"}'))
    descriptor = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "DISPATCH_SETPOINT"}
    enrollment = await app.engine.enroll(program["id"], group.id)
    event = json.loads(
        await app.vtn.create(
            BL,
            EVENT,
            json.dumps(
                {
                    "programID": program["id"],
                    "payloadDescriptors": [{**descriptor, "units": "KW"}],
                    "intervalPeriod": {"start": "2031-07-16T00:00:00Z", "duration": "PT1H"},
                    "intervals": [
                        {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [3]}]}
                    ],
                }
            ).encode(),
        )
    )
    # 2031-07-16T00:00Z is 2031-07-15 17:00 in Los Angeles (PDT): the event is 17:00-18:00.
    # Site A: 600 W from 17:00 on each of the 10 weekdays July 1-14 (600 Wh each), 5,000 W on
    # Monday June 30 (the 11th weekday back: not used) and 9,000 W on Saturday July 12 (a
    # weekend: not used). On the event day 3,000 W from 17:00 and 2,000 W from 17:30:
    # delivered 1,500 + 1,000 = 2,500 Wh, baseline 600 Wh, above baseline 1,900 Wh = 1.9 kWh.
    history = [f"2031-07-{day:02d}T17:00" for day in (1, 2, 3, 4, 7, 8, 9, 10, 11, 14)]
    await mirror(
        app,
        A,
        [(h, 600) for h in history]
        + [("2031-06-30T17:00", 5000), ("2031-07-12T17:00", 9000)]
        + [("2031-07-15T17:00", 3000), ("2031-07-15T17:30", 2000)],
    )
    # Site B delivered 4,000 W for the hour but opted out (status 4): listed with zero.
    await mirror(app, B, [("2031-07-15T17:00", 4000)])
    links = await _links(app, event["id"])
    await app.programs.post_response(
        device(B),
        enrollment.der_program_id,
        (
            f"<DERControlResponse {NS}><createdDateTime>{at('2031-07-15T16:00')}</createdDateTime>"
            f"<endDeviceLFDI>{B}</endDeviceLFDI><status>4</status>"
            f"<subject>{links[0]}</subject></DERControlResponse>"
        ).encode(),
    )
    # The aggregator's VEN reports BASELINE 1.5 kWh and USAGE -2.0 kWh (it exported 2 kWh):
    # above baseline 1.5 - (-2.0) = 3.5 kWh. The program: 1.9 + 0 + 3.5 = 5.4 kWh.
    report = {
        "eventID": event["id"],
        "clientName": "fleetco",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": p, "units": "KWH"}
            for p in ("USAGE", "BASELINE")
        ],
        "resources": [
            {
                "resourceName": "fleet",
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "USAGE", "values": [-2.0]},
                            {"type": "BASELINE", "values": [1.5]},
                        ],
                    }
                ],
            }
        ],
    }
    await app.vtn.create(VEN, REPORT, json.dumps(report).encode())
    app.clock.set(at("2031-07-15T19:00"))

    settled = await app.settlement.settle(event["id"])
    assert settled.csv() == (
        "kind,id,delivered_kwh,baseline_kwh,above_baseline_kwh,baseline_days,short_history,"
        "opted_out\n"
        f"site,{A},2.500,0.600,1.900,10,false,false\n"
        f"site,{B},0.000,0.000,0.000,0,false,true\n"
        "aggregator,fleetco,2.000,-1.500,3.500,,,\n"
        f"program,{program['id']},,,5.400,,,\n"
    )


async def _links(app: App, event_id: str) -> list[str]:
    async with app.store.transaction() as s:
        return [
            link.control.mrid for link in await engine_store.select_engine_controls(s, event_id)
        ]
