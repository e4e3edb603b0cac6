"""The issue's scenario end to end over HTTPS: a BL publishes a program and an event with
intervals; two VENs with different targets register; each reads only what it should; VEN A
reports and B cannot see it; a webhook and an MQTT subscriber get the event's update and
delete."""

from __future__ import annotations

from vtn_support import MqttListener, VtnClient, WebhookReceiver

from conftest import Vtn

from support import BACKENDS

pytestmark = BACKENDS


async def register(bl: VtnClient, ven: VtnClient, name: str, targets: list[str]) -> str:
    """The VEN registers itself; the BL grants it targets (only a BL may)."""
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
    assert granted.status == 200 and granted.body["targets"] == targets
    return str(mine.body["id"])


async def test_scenario(vtn: Vtn, webhook: WebhookReceiver, mqtt: MqttListener) -> None:
    bl = await vtn.client("utility", "bl")
    ven_a = await vtn.client("aggregator-a", "ven")
    ven_b = await vtn.client("aggregator-b", "ven")
    program = await bl.post(
        "/programs",
        {
            "programName": "critical-peak",
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "IMPORT_CAPACITY_LIMIT",
                    "units": "KW",
                }
            ],
        },
    )
    assert program.status == 201
    program_id = program.body["id"]
    ven_a_id = await register(bl, ven_a, "fleet-a", ["feeder-12"])
    await register(bl, ven_b, "fleet-b", ["feeder-40"])

    # subscribers: a BL webhook and VEN A's MQTT topics
    subscription = await bl.post(
        "/subscriptions",
        {
            "clientName": "utility-monitor",
            "programID": program_id,
            "objectOperations": [
                {
                    "objects": ["EVENT"],
                    "operations": ["UPDATE", "DELETE"],
                    "callbackUrl": webhook.url("/events"),
                    "bearerToken": "hook-token",
                }
            ],
        },
    )
    assert subscription.status == 201
    topics = (await ven_a.get(f"/notifiers/mqtt/topics/vens/{ven_a_id}/events")).body["topics"]
    await mqtt.start([topics["ALL"]])

    event_body = {
        "programID": program_id,
        "eventName": "heat-wave",
        "targets": ["feeder-12"],
        "intervalPeriod": {"start": "2031-08-01T22:00:00Z", "duration": "PT1H"},
        "intervals": [
            {"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [5.0]}]},
            {"id": 1, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [3.5]}]},
            {"id": 2, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [5.0]}]},
        ],
    }
    event = await bl.post("/events", event_body)
    assert event.status == 201
    event_id = event.body["id"]

    # each VEN reads only what it should
    events_a = (await ven_a.get("/events", {"programID": program_id})).body
    assert [e["id"] for e in events_a] == [event_id]
    assert [p["values"] for i in events_a[0]["intervals"] for p in i["payloads"]] == [
        [5.0],
        [3.5],
        [5.0],
    ]
    assert (await ven_b.get("/events", {"programID": program_id})).body == []
    assert (await ven_b.get(f"/events/{event_id}")).status == 404
    assert [p["id"] for p in (await ven_b.get("/programs")).body] == [program_id]  # untargeted

    # VEN A reports; VEN B cannot see it; the BL can
    report = await ven_a.post(
        "/reports",
        {
            "eventID": event_id,
            "clientName": "fleet-a",
            "resources": [
                {
                    "resourceName": "site-7",
                    "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [4.2]}]}],
                }
            ],
        },
    )
    assert report.status == 201
    assert (await ven_b.get("/reports")).body == []
    assert (await ven_b.get(f"/reports/{report.body['id']}")).status == 404
    assert [r["id"] for r in (await bl.get("/reports", {"eventID": event_id})).body] == [
        report.body["id"]
    ]

    # the event changes, then goes; both subscribers hear both
    updated = await bl.put(f"/events/{event_id}", {**event_body, "eventName": "heat-wave-2"})
    assert updated.status == 200
    assert (await bl.delete(f"/events/{event_id}")).status == 200
    notes = await webhook.wait_for(2)
    assert [(n["operation"], n["object"]["id"]) for n in notes] == [
        ("UPDATE", event_id),
        ("DELETE", event_id),
    ]
    assert notes[0]["object"]["eventName"] == "heat-wave-2"
    assert webhook.authorizations == ["Bearer hook-token"] * 2
    messages = await mqtt.wait_for(3)  # CREATE, UPDATE, DELETE on A's topics
    assert [(t, n["operation"]) for t, n in messages] == [
        (topics["CREATE"], "CREATE"),
        (topics["UPDATE"], "UPDATE"),
        (topics["DELETE"], "DELETE"),
    ]
    assert all(n["object"]["id"] == event_id for _, n in messages)
