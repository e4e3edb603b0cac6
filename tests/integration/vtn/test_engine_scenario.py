"""Issue 10's scenario end to end, through real sockets (item 8): one utility program, two
standards. A BL client (HTTPS, bearer token) creates a program and an event with two
intervals; a device in an enrolled group (mutual TLS) sees two contiguous DERControls with
the right values, becoming active as the server clock moves, and is notified; it answers with
Responses and MirrorMeterReadings; a VEN granted the program receives the same event by
webhook and posts its own report; the BL updates and then deletes the event, and the device
sees superseded then cancelled controls. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree
from vtn_support import VtnClient, WebhookReceiver

from conftest import Vtn, VtnFactory
from csip.sep2.client import MirrorReading, Sep2Client, mrid_for

from helpers import register
from notify_receiver import Receiver, subscription_xml
from support import BACKENDS, Running

pytestmark = BACKENDS
SEP = "{urn:ieee:std:2030.5:ns}"


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def admin(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


def controls(root: etree._Element) -> list[dict[str, Any]]:
    found = []
    for c in root.findall(f"{SEP}DERControl"):
        target = c.find(f"{SEP}DERControlBase/{SEP}opModTargetW")
        assert target is not None
        found.append(
            {
                "href": c.get("href"),
                "reply_to": c.get("replyTo"),
                "response_required": c.get("responseRequired"),
                "mrid": c.findtext(f"{SEP}mRID"),
                "start": int(c.findtext(f"{SEP}interval/{SEP}start") or 0),
                "duration": int(c.findtext(f"{SEP}interval/{SEP}duration") or 0),
                "watts": int(target.findtext(f"{SEP}value") or 0)
                * 10 ** int(target.findtext(f"{SEP}multiplier") or 0),
                "status": c.findtext(f"{SEP}EventStatus/{SEP}currentStatus"),
            }
        )
    return sorted(found, key=lambda c: (c["start"], c["status"]))


async def grant(bl: VtnClient, ven: VtnClient, name: str, targets: list[str]) -> str:
    mine = await ven.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": name})
    assert mine.status == 201
    granted = await bl.put(
        f"/vens/{mine.body['id']}",
        {
            "objectType": "BL_VEN_REQUEST",
            "venName": name,
            "clientID": ven.client_id,
            "targets": targets,
        },
    )
    assert granted.status == 200
    return str(mine.body["id"])


async def test_one_program_two_standards(
    make_vtn: VtnFactory, receiver: Receiver, webhook: WebhookReceiver
) -> None:
    vtn: Vtn = await make_vtn(notification_allow_private=True, outbox_retry_delays=[0.2, 0.5])
    srv = vtn.running
    device = srv.pki.device_a
    edev = await register(srv, device)
    client = srv.client(device)

    # the utility's side: a group with a target name, the device in it
    group = await admin(srv, "POST", "/api/groups", {"description": "feeder 7", "level": "feeder"})
    await admin(srv, "PUT", f"/api/groups/{group['id']}/target", {"target": "feeder-7"})
    await admin(srv, "PUT", f"/api/groups/{group['id']}/members/{device.lfdi}")

    bl = await vtn.client("utility", "bl")
    ven = await vtn.client("fleetco", "ven")
    program = await bl.post(
        "/programs",
        {
            "programName": "cbes",
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
    enrollment = await admin(
        srv, "POST", f"/api/engine/programs/{program_id}/enrollments", {"group": group["id"]}
    )
    derp = enrollment["der_program_href"]
    await grant(bl, ven, "fleetco", ["feeder-7"])
    hook = await ven.post(
        "/subscriptions",
        {
            "clientName": "fleetco",
            "programID": program_id,
            "objectOperations": [
                {
                    "objects": ["EVENT"],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                    "callbackUrl": webhook.url("/ven-events"),
                    "bearerToken": "ven-hook",
                }
            ],
        },
    )
    assert hook.status == 201, hook.body

    # the device finds the program through its group and subscribes to its controls
    fsa = (await client.get(f"{edev}/fsa")).xml()
    assert fsa.find(f"{SEP}FunctionSetAssignments/{SEP}DERProgramListLink") is not None
    programs = (await client.get(f"/fsa/{group['id']}/derp")).xml()
    assert [p.get("href") for p in programs.findall(f"{SEP}DERProgram")] == [derp]
    posted = await client.post(f"{edev}/sub", subscription_xml(f"{derp}/derc", receiver.uri))
    assert posted.status == 201

    now = int((await admin(srv, "GET", "/api/clock"))["now"])
    start = now - now % 60 + 600
    event_body = {
        "programID": program_id,
        "eventName": "evening peak",
        "targets": ["feeder-7"],
        "intervalPeriod": {"start": iso(start), "duration": "PT1H"},
        "intervals": [
            {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [3.3]}]},
            {"id": 1, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [1.5]}]},
        ],
    }
    event = await bl.post("/events", event_body)
    assert event.status == 201, event.body
    event_id = event.body["id"]

    # 2030.5: two contiguous controls with the right values, and a notification
    listed = controls((await client.get(f"{derp}/derc?l=10")).xml())
    assert [(c["start"], c["duration"], c["watts"], c["status"]) for c in listed] == [
        (start, 3600, 3300, "0"),
        (start + 3600, 3600, 1500, "0"),
    ]
    assert all(c["response_required"] == "03" for c in listed)
    (note,) = await receiver.wait(1)
    assert note.findtext(f"{SEP}subscribedResource") == f"{derp}/derc"
    assert len(note.findall(f"{SEP}Resource/{SEP}DERControl")) == 2

    # OpenADR: the VEN granted feeder-7 got the same event by webhook
    (ven_note,) = await webhook.wait_for(1)
    assert ven_note["operation"] == "CREATE" and ven_note["object"]["id"] == event_id

    # the clock moves into the first interval: it is active, with no write
    await admin(srv, "PUT", "/api/clock", {"advance": 660})
    active = controls((await client.get(f"{derp}/actderc")).xml())
    assert [(c["watts"], c["status"]) for c in active] == [(3300, "1")]

    # the device answers and reports what it does
    first = listed[0]
    for status in (1, 2):  # received, started
        reply = await client.post(
            first["reply_to"],
            '<DERControlResponse xmlns="urn:ieee:std:2030.5:ns">'
            f"<createdDateTime>{start + 60}</createdDateTime>"
            f"<endDeviceLFDI>{device.lfdi}</endDeviceLFDI><status>{status}</status>"
            f"<subject>{first['mrid']}</subject></DERControlResponse>",
        )
        assert reply.status == 201, reply.body
    responses = await admin(srv, "GET", f"/api/end-devices/{device.lfdi}/responses")
    assert sorted(r["status"] for r in responses) == [1, 2]
    power = MirrorReading("W", uom=38, value=-3280)
    soc = MirrorReading("SoC", uom=0, value=6400, multiplier=-2, kind=0, data_qualifier=None)
    site = mrid_for(device.lfdi, "site")
    lib = Sep2Client(srv.base, None, session=client.session, validator=srv.validator)
    mup = await lib.create_mirror_usage_point(
        lfdi=device.lfdi, mrid=site, description="battery", readings=[power, soc]
    )
    posted_readings = await lib.post_readings(
        mup, mrid=site, readings=[power, soc], start=start + 60, duration=60
    )
    assert posted_readings.status in (200, 201, 204), posted_readings.body

    # the VEN reports too; its report is its own
    ven_report = await ven.post(
        "/reports",
        {
            "eventID": event_id,
            "clientName": "fleetco",
            "resources": [
                {
                    "resourceName": "fleet",
                    "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [-41.0]}]}],
                }
            ],
        },
    )
    assert ven_report.status == 201, ven_report.body

    # update: the second interval changes; the device never sees a gap
    event_body["intervals"][1]["payloads"][0]["values"] = [2.0]  # type: ignore[index]
    assert (await bl.put(f"/events/{event_id}", event_body)).status == 200
    after = controls((await client.get(f"{derp}/derc?l=10")).xml())
    live = [c for c in after if c["status"] in ("0", "1")]
    assert [(c["start"], c["duration"], c["watts"]) for c in live] == [
        (start, 3600, 3300),
        (start + 3600, 3600, 2000),
    ]
    assert [c["status"] for c in live] == ["1", "0"]
    assert sum(1 for c in after if c["status"] == "4") >= 1  # the old second control
    active = controls((await client.get(f"{derp}/actderc")).xml())
    assert len(active) == 1  # never two active controls for one mode

    # delete: every control of the event is cancelled, nothing disappears on 2030.5
    assert (await bl.delete(f"/events/{event_id}")).status == 200
    final = controls((await client.get(f"{derp}/derc?l=10")).xml())
    assert {c["status"] for c in final} <= {"2", "4"} and any(c["status"] == "2" for c in final)
    assert (await client.get(f"{derp}/actderc")).xml().get("all") == "0"
    mapping = await admin(srv, "GET", f"/api/engine/events/{event_id}/mapping")
    assert mapping["deleted"] is True
    assert [g["target"] for g in mapping["groups"]] == ["feeder-7"]
    notes = await webhook.wait_for(3)
    assert [n["operation"] for n in notes] == ["CREATE", "UPDATE", "DELETE"]
