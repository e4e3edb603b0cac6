"""An aggregator's capacity from its VEN's reports, on SQLite, no sockets (issue 12 item 5):
what a VEN reports through the VTN (STORAGE_* payloads) is its capacity above the program's
floor in /api/capacity?ven=NAME, and an OpenADR program's view lists the VENs granted the
program beside its 2030.5 groups. Figures worked out by hand in the comments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from csip.app import App
from csip.domain.programs import ProgramTerms
from csip.domain.ven_capacity import STALE_REPORT
from csip.errors import NotFound
from csip.openadr.rules import EVENT, PROGRAM, REPORT, VEN, Principal
from csip.store.engine import ProgramChoices
from csip.web.admin_fleet import capacity_csv, capacity_json, ven_json

from support import Pki, built_app

H = 555_555
NOW = H * 3600 + 1800
BL = Principal(
    "bl-1", "bl", frozenset({"read_all", "write_programs", "write_events", "write_vens"})
)


def ven_client(client_id: str) -> Principal:
    scopes = {"read_targets", "read_ven_objects", "write_reports", "write_vens"}
    return Principal(client_id, "ven", frozenset(scopes))


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, NOW) as built:
        yield built


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create(app: App, who: Principal, kind: str, body: dict[str, object]) -> str:
    return str(json.loads(await app.vtn.create(who, kind, json.dumps(body).encode()))["id"])


def storage(name: str, start: int, kwh: float, level: float, kw: float) -> dict[str, object]:
    return {
        "resourceName": name,
        "intervalPeriod": {"start": iso(start), "duration": "PT1H"},
        "intervals": [
            {
                "id": 0,
                "payloads": [
                    {"type": "STORAGE_USABLE_CAPACITY", "values": [kwh]},
                    {"type": "STORAGE_CHARGE_LEVEL", "values": [level]},
                    {"type": "STORAGE_MAX_DISCHARGE_POWER", "values": [kw]},
                ],
            }
        ],
    }


async def setup(app: App) -> str:
    """A program for feeder-x with a 20 % reserve floor and one (empty) enrolled group; VEN
    agg-1 granted feeder-x, VEN agg-2 granted feeder-y only."""
    program_id = await create(app, BL, PROGRAM, {"programName": "cbes", "targets": ["feeder-x"]})
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
        )
    )
    group = await app.programs.create_group("north", "feeder", None)
    await app.engine.enroll(program_id, group.id)
    for ven, client, target in (("agg-1", "ven-1", "feeder-x"), ("agg-2", "ven-2", "feeder-y")):
        await create(
            app,
            BL,
            VEN,
            {
                "objectType": "BL_VEN_REQUEST",
                "venName": ven,
                "clientID": client,
                "targets": [target],
            },
        )
    event_id = await create(
        app,
        BL,
        EVENT,
        {
            "programID": program_id,
            "intervalPeriod": {"start": iso(NOW + 7200), "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],
        },
    )
    # agg-1's VEN reports two batteries (units: the enumerations' defaults for csip, KWH/KW)
    await create(
        app,
        ven_client("ven-1"),
        REPORT,
        {
            "eventID": event_id,
            "clientName": "agg-1",
            "payloadDescriptors": [
                {
                    "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "STORAGE_USABLE_CAPACITY",
                    "units": "KWH",
                },
                {
                    "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "STORAGE_CHARGE_LEVEL",
                    "units": "PERCENT",
                },
                {
                    "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "STORAGE_MAX_DISCHARGE_POWER",
                    "units": "KW",
                },
            ],
            "resources": [
                storage("home-1", NOW - 900, 13.5, 0.8, 5.0),
                storage("home-2", NOW - 900, 10.0, 0.35, 3.0),
                storage("home-3", NOW - 5 * 3600, 10.0, 1.0, 3.0),  # three hours old
            ],
        },
    )
    return program_id


async def test_a_vens_capacity_comes_from_its_storage_reports(app: App) -> None:
    await setup(app)
    report = await app.fleet.ven_capacity("agg-1", program_floor=20.0, hours=2)
    capacity = report.capacity
    # home-1: (80 - 20) % of 13.5 kWh = 8.1 kWh, 8.1 kW over an hour, its limit 5 kW
    # home-2: (35 - 20) % of 10 kWh = 1.5 kWh, 1.5 kW; home-3: too old, flagged
    assert capacity.now.energy_wh == pytest.approx(9600.0)
    assert capacity.now.power_w == pytest.approx(6500.0)
    assert capacity.unavailable == {"home-3": STALE_REPORT}
    shown = ven_json(report)
    assert (shown["ven"], shown["resources"], shown["available"]) == ("agg-1", 3, 2)
    assert shown["now"]["energy_kwh"] == 9.6 and shown["now"]["power_kw"] == 6.5
    assert [f["energy_kwh"] for f in shown["forecast"]] == [9.6, 9.6]  # the last value holds
    assert shown["unavailable"]["resources"] == [{"resourceName": "home-3", "reason": STALE_REPORT}]
    rows = capacity_csv(report).splitlines()
    assert rows[0] == "kind,at,energy_kwh,power_kw,devices"
    assert rows[1] == f"now,{NOW},9.6,6.5,2"

    # agg-2 reported nothing: it is known, with nothing to count
    empty = await app.fleet.ven_capacity("agg-2")
    assert (empty.capacity.resources, empty.capacity.now.energy_wh) == (0, 0.0)
    with pytest.raises(NotFound):
        await app.fleet.ven_capacity("nobody")


async def test_a_programs_view_lists_the_vens_granted_it_beside_its_groups(app: App) -> None:
    program_id = await setup(app)
    report = await app.fleet.capacity(openadr_program=program_id, hours=1)
    assert report.vens is not None
    assert [v.ven_name for v in report.vens] == ["agg-1"]  # agg-2 may not see feeder-x
    shown = capacity_json(report)
    assert shown["devices"] == 0  # the enrolled group has no batteries yet
    (agg,) = shown["vens"]
    assert agg["program_floor"] == 20.0  # the program's floor term applies to the VEN too
    assert (agg["now"]["energy_kwh"], agg["now"]["power_kw"]) == (9.6, 6.5)
    assert shown["total"]["now"] == {"at": NOW, "energy_kwh": 9.6, "power_kw": 6.5, "devices": 2}
    assert len(shown["total"]["forecast"]) == 1
