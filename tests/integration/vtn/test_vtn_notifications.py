"""Notifications: webhooks (echo check, bearer token, privacy, retries) and MQTT on the real
broker with the topic names the /notifiers/mqtt/topics endpoints return."""

from __future__ import annotations

import asyncio

from aiohttp import web
from vtn_support import MqttListener, WebhookReceiver

from conftest import Vtn

from support import BACKENDS

pytestmark = BACKENDS


def subscription(
    url: str,
    objects: list[str],
    token: str | None = "s3cret",  # noqa: S107
) -> dict[str, object]:
    return {
        "clientName": "listener",
        "objectOperations": [
            {
                "objects": objects,
                "operations": ["CREATE", "UPDATE", "DELETE"],
                "callbackUrl": url,
                "bearerToken": token,
            }
        ],
    }


async def test_webhooks_follow_privacy_and_carry_the_bearer_token(
    vtn: Vtn, webhook: WebhookReceiver
) -> None:
    bl = await vtn.client("bl", "bl")
    ven_a = await vtn.client("ven-a", "ven")
    ven_b = await vtn.client("ven-b", "ven")
    va = (await ven_a.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "A"})).body
    await ven_b.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "B"})
    await bl.put(
        f"/vens/{va['id']}",
        {
            "objectType": "BL_VEN_REQUEST",
            "venName": "A",
            "clientID": va["clientID"],
            "targets": ["t-a"],
        },
    )
    program = (await bl.post("/programs", {"programName": "p"})).body
    assert (
        await ven_a.post("/subscriptions", subscription(webhook.url("/a"), ["EVENT"]))
    ).status == 201
    assert (
        await ven_b.post("/subscriptions", subscription(webhook.url("/b"), ["EVENT"], None))
    ).status == 201
    assert webhook.echo_checks == 2
    event = (
        await bl.post("/events", {"programID": program["id"], "targets": ["t-a", "t-secret"]})
    ).body
    await bl.put(
        f"/events/{event['id']}",
        {"programID": program["id"], "targets": ["t-a", "t-secret"], "eventName": "x"},
    )
    await bl.delete(f"/events/{event['id']}")
    notes = await webhook.wait_for(3)
    await asyncio.sleep(0.3)  # nothing more arrives (B may not see the event)
    assert [n["operation"] for n in notes] == ["CREATE", "UPDATE", "DELETE"]
    assert all(n["objectType"] == "EVENT" and n["object"]["id"] == event["id"] for n in notes)
    assert all(n["object"]["targets"] == ["t-a"] for n in notes)  # A's view only
    assert webhook.authorizations == ["Bearer s3cret"] * 3
    # an untargeted event reaches both
    await bl.post("/events", {"programID": program["id"]})
    notes = await webhook.wait_for(5)
    assert sorted(webhook.authorizations[3:]) == ["", "Bearer s3cret"]


async def test_callbacks_are_checked_before_the_subscription_is_stored(
    vtn: Vtn, webhook: WebhookReceiver
) -> None:
    ven = await vtn.client("ven", "ven")
    refused = [
        "ftp://127.0.0.1/x",
        "http://example.invalid/hook",  # does not resolve
        "https://10.1.2.3/hook",  # internal address
    ]
    for url in refused:
        answer = await ven.post("/subscriptions", subscription(url, ["PROGRAM"]))
        assert answer.status == 400, url

    async def wrong_echo(request: web.Request) -> web.Response:
        return web.Response(text="not-the-echo")

    app = web.Application()
    app.router.add_get("/hook", wrong_echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        answer = await ven.post(
            "/subscriptions", subscription(f"http://127.0.0.1:{port}/hook", ["PROGRAM"])
        )
        assert answer.status == 400 and "echo" in answer.body["detail"]
    finally:
        await runner.cleanup()
    assert (await ven.get("/subscriptions")).body == []
    # the URL's own query parameters are kept; a JSON string echo is fine too
    url = webhook.url("/hook?tenant=7")
    assert (await ven.post("/subscriptions", subscription(url, ["PROGRAM"]))).status == 201


async def test_loopback_callbacks_need_the_lab_setting(
    make_vtn: object, webhook: WebhookReceiver
) -> None:
    from conftest import VtnFactory

    factory: VtnFactory = make_vtn  # type: ignore[assignment]
    strict = await factory(vtn_webhook_allow_loopback=False)
    ven = await strict.client("ven", "ven")
    answer = await ven.post("/subscriptions", subscription(webhook.url(), ["PROGRAM"]))
    assert answer.status == 400 and webhook.echo_checks == 0


async def test_failed_deliveries_are_retried(vtn: Vtn, webhook: WebhookReceiver) -> None:
    bl = await vtn.client("bl", "bl")
    await bl.post("/subscriptions", subscription(webhook.url(), ["PROGRAM"]))
    webhook.status = 503
    await bl.post("/programs", {"programName": "p"})
    await asyncio.sleep(0.3)
    assert webhook.notifications == []
    webhook.status = 200  # retried after 0.5 s (this fixture's outbox_retry_delays)
    notes = await webhook.wait_for(1, within=5)
    assert notes[0]["object"]["programName"] == "p"


async def test_mqtt_topics_and_publishes(vtn: Vtn, mqtt: MqttListener) -> None:
    bl = await vtn.client("bl", "bl")
    ven_a = await vtn.client("ven-a", "ven")
    ven_b = await vtn.client("ven-b", "ven")
    notifiers = (await ven_a.get("/notifiers")).body
    assert notifiers["WEBHOOK"] is True
    assert notifiers["MQTT"]["URIS"] == ["mqtt://127.0.0.1:1883"]
    assert notifiers["MQTT"]["serialization"] == "JSON"
    assert (await ven_a.get("/notifiers/mqtt/topics/events")).status == 404  # no ven yet
    va = (await ven_a.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "A"})).body
    vb = (await ven_b.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "B"})).body
    await bl.put(
        f"/vens/{va['id']}",
        {
            "objectType": "BL_VEN_REQUEST",
            "venName": "A",
            "clientID": va["clientID"],
            "targets": ["t-a"],
        },
    )
    program = (await bl.post("/programs", {"programName": "p"})).body
    bl_events = (await bl.get("/notifiers/mqtt/topics/events")).body["topics"]
    bl_program_events = (
        await bl.get(f"/notifiers/mqtt/topics/programs/{program['id']}/events")
    ).body["topics"]
    a_events = (await ven_a.get("/notifiers/mqtt/topics/events")).body["topics"]
    b_events = (await ven_b.get(f"/notifiers/mqtt/topics/vens/{vb['id']}/events")).body["topics"]
    assert a_events["ALL"] != b_events["ALL"] != bl_events["ALL"]
    assert (await ven_a.get(f"/notifiers/mqtt/topics/vens/{vb['id']}/events")).status == 404
    for path in (
        "/notifiers/mqtt/topics/programs",
        f"/notifiers/mqtt/topics/programs/{program['id']}",
        "/notifiers/mqtt/topics/reports",
        "/notifiers/mqtt/topics/subscriptions",
        "/notifiers/mqtt/topics/vens",
        f"/notifiers/mqtt/topics/vens/{va['id']}",
        f"/notifiers/mqtt/topics/vens/{va['id']}/programs",
        f"/notifiers/mqtt/topics/vens/{va['id']}/resources",
        "/notifiers/mqtt/topics/resources",
    ):
        assert (await bl.get(path)).status == 200, path
    assert (await bl.get("/notifiers/mqtt/topics/programs/nope")).status == 404
    await mqtt.start([bl_events["ALL"], bl_program_events["ALL"], a_events["ALL"], b_events["ALL"]])
    event = (await bl.post("/events", {"programID": program["id"], "targets": ["t-a", "t-x"]})).body
    await bl.delete(f"/events/{event['id']}")
    messages = await mqtt.wait_for(6)
    await asyncio.sleep(0.3)
    by_topic: dict[str, list[str]] = {}
    for topic, note in messages:
        by_topic.setdefault(topic, []).append(note["operation"])
        assert note["object"]["id"] == event["id"]
    assert by_topic == {
        bl_events["CREATE"]: ["CREATE"],
        bl_events["DELETE"]: ["DELETE"],
        bl_program_events["CREATE"]: ["CREATE"],
        bl_program_events["DELETE"]: ["DELETE"],
        a_events["CREATE"]: ["CREATE"],
        a_events["DELETE"]: ["DELETE"],
    }  # nothing on B's topics: the event is not for B
    a_note = next(n for t, n in messages if t == a_events["CREATE"])
    assert a_note["object"]["targets"] == ["t-a"]
    bl_note = next(n for t, n in messages if t == bl_events["CREATE"])
    assert bl_note["object"]["targets"] == ["t-a", "t-x"]
