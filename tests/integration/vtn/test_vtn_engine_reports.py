"""Answers come back as reports (issue 10 item 5), through real sockets on SQLite and
PostgreSQL: a BL creates a program and an event asking for reports over HTTPS with a token;
a device in an enrolled group (mutual TLS) answers the event's control and mirrors its power
and state of charge; as the server clock moves the BL's GET /reports?eventID= shows csip's
report for the group, growing in place, and the BL's report subscription webhook fires."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from vtn_support import VtnClient, WebhookReceiver

from conftest import Vtn

from helpers import register
from support import BACKENDS, Running

pytestmark = BACKENDS
NS = 'xmlns="urn:ieee:std:2030.5:ns"'
PEN = "0000A4F1"


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


def mirror(lfdi: str, at: int, watts: int, soc: int) -> str:
    def mmr(n: int, uom: int, value: int) -> str:
        return (
            f"<MirrorMeterReading><mRID>{n:024X}{PEN}</mRID>"
            f"<Reading><timePeriod><duration>60</duration><start>{at}</start></timePeriod>"
            f"<value>{value}</value></Reading>"
            "<ReadingType><kind>37</kind><powerOfTenMultiplier>0</powerOfTenMultiplier>"
            f"<uom>{uom}</uom></ReadingType></MirrorMeterReading>"
        )

    return (
        f"<MirrorUsagePoint {NS}><mRID>{7:024X}{PEN}</mRID><description>battery</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind>"
        f"<status>1</status><deviceLFDI>{lfdi}</deviceLFDI>"
        f"{mmr(71, 38, watts)}{mmr(72, 0, soc)}</MirrorUsagePoint>"
    )


def response(lfdi: str, subject: str, status: int) -> str:
    return (
        f"<DERControlResponse {NS}><createdDateTime>{int(time.time())}</createdDateTime>"
        f"<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status>"
        f"<subject>{subject}</subject></DERControlResponse>"
    )


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    (resource,) = report["resources"]
    assert resource["resourceName"] == "feeder-north"
    return [{p["type"]: p["values"][0] for p in i["payloads"]} for i in resource["intervals"]]


async def csip_report(bl: VtnClient, event_id: str) -> dict[str, Any]:
    listed = await bl.get("/reports", {"eventID": event_id})
    assert listed.status == 200
    (report,) = [r for r in listed.body if r["clientID"] == "csip"]
    return dict(report)


async def test_device_answers_reach_the_bl_as_a_growing_report(
    vtn: Vtn, webhook: WebhookReceiver
) -> None:
    srv = vtn.running
    device = srv.pki.device_a
    await register(srv, device)
    bl = await vtn.client("utility", "bl")
    program = await bl.post(
        "/programs",
        {
            "programName": "battery-peak",
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "DISPATCH_SETPOINT",
                    "units": "KW",
                }
            ],
        },
    )
    assert program.status == 201
    program_id = program.body["id"]
    group = await ok(srv, "POST", "/api/groups", {"description": "north", "level": "feeder"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/target", {"target": "feeder-north"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{device.lfdi}")
    await ok(srv, "POST", f"/api/engine/programs/{program_id}/enrollments", {"group": group["id"]})
    subscription = await bl.post(
        "/subscriptions",
        {
            "clientName": "report-monitor",
            "programID": program_id,
            "objectOperations": [
                {
                    "objects": ["REPORT"],
                    "operations": ["CREATE", "UPDATE"],
                    "callbackUrl": webhook.url("/reports"),
                }
            ],
        },
    )
    assert subscription.status == 201

    now = int((await ok(srv, "GET", "/api/clock"))["now"])
    start = now + 600
    event = await bl.post(
        "/events",
        {
            "programID": program_id,
            "eventName": "evening",
            "intervalPeriod": {"start": iso(start), "duration": "PT10M"},
            "intervals": [
                {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [4.0]}]},
                {"id": 1, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [2.0]}]},
            ],
            "reportDescriptors": [{"payloadType": "DEMAND", "readingType": "MEAN", "units": "KW"}],
        },
    )
    assert event.status == 201
    event_id = event.body["id"]

    # the device finds the control for interval 0 and says it received it
    mapping = await ok(srv, "GET", f"/api/engine/events/{event_id}/mapping")
    first = min(mapping["groups"][0]["controls"], key=lambda c: c["start"])
    client = srv.client(device)
    control = await client.get(first["href"])
    subject = control.find("s:mRID") or ""
    reply_to = control.xml().get("replyTo")
    assert (await client.post(reply_to, response(device.lfdi, subject, 1))).status == 201

    # nothing is reported before the event begins; when the clock reaches it, csip creates
    # its report on its own (no write happens)
    assert [r for r in (await bl.get("/reports", {"eventID": event_id})).body] == []
    await ok(srv, "PUT", "/api/clock", {"advance": start + 10 - now})
    (created,) = await webhook.wait_for(1, within=15)
    assert created["objectType"] == "REPORT" and created["operation"] == "CREATE"
    assert created["object"]["clientID"] == "csip"
    assert figures(created["object"]) == [{"X_CSIP_DEVICES": 1, "X_CSIP_RESPONSES_RECEIVED": 1}]

    # the device starts the event and mirrors 2.5 kW at 60 % charge: the report is updated
    assert (await client.post(reply_to, response(device.lfdi, subject, 2))).status == 201
    posted = await client.post("/mup", mirror(device.lfdi, start + 5, 2500, 60))
    assert posted.status == 201, posted.body
    notes = await webhook.wait_for(2, within=15)
    while figures(notes[-1]["object"])[0].get("STORAGE_CHARGE_LEVEL") is None:
        notes = await webhook.wait_for(len(notes) + 1, within=15)  # response, then readings
    assert notes[-1]["operation"] == "UPDATE"
    report = await csip_report(bl, event_id)
    assert report["id"] == created["object"]["id"]  # updated in place, never a new one
    assert figures(report) == [
        {
            "X_CSIP_DEVICES": 1,
            "X_CSIP_RESPONSES_STARTED": 1,
            "DEMAND": 2.5,
            "STORAGE_CHARGE_LEVEL": 0.6,
        }
    ]

    # the second interval begins: the same report gains it
    seen = len(webhook.notifications)
    await ok(srv, "PUT", "/api/clock", {"advance": 600})  # tokens outlive this
    notes = await webhook.wait_for(seen + 1, within=15)
    grown = await csip_report(bl, event_id)
    assert grown["id"] == report["id"]
    assert [i["id"] for i in grown["resources"][0]["intervals"]] == [0, 1]
    assert all(n["object"]["id"] == report["id"] for n in notes)
