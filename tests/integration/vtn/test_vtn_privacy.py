"""3.1.0 object privacy: a VEN sees its own ven, resources, reports and subscriptions, and
the programs and events whose targets meet what the BL granted it; it never sees others'
targets; only BL clients write targets."""

from __future__ import annotations

import asyncio

from vtn_support import VtnClient

from conftest import Vtn

from support import BACKENDS

pytestmark = BACKENDS


async def setup_two_vens(vtn: Vtn) -> tuple[VtnClient, VtnClient, VtnClient, dict[str, str]]:
    bl = await vtn.client("bl", "bl")
    ven_a = await vtn.client("ven-a", "ven")
    ven_b = await vtn.client("ven-b", "ven")
    va = (await ven_a.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "A"})).body
    vb = (await ven_b.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "B"})).body
    assert va["clientID"] == ven_a.client_id and "targets" not in va
    grant_a = {
        "objectType": "BL_VEN_REQUEST",
        "venName": "A",
        "clientID": ven_a.client_id,
        "targets": ["zone-1"],
    }
    assert (await bl.put(f"/vens/{va['id']}", grant_a)).status == 200
    resource_b = {
        "objectType": "BL_RESOURCE_REQUEST",
        "resourceName": "battery-1",
        "venID": vb["id"],
        "clientID": ven_b.client_id,
        "targets": ["zone-2"],
    }
    assert (await bl.post("/resources", resource_b)).status == 201
    return bl, ven_a, ven_b, {"A": va["id"], "B": vb["id"]}


async def test_programs_and_events_by_granted_targets(vtn: Vtn) -> None:
    bl, ven_a, ven_b, _ = await setup_two_vens(vtn)
    public = (await bl.post("/programs", {"programName": "public"})).body
    zone1 = (
        await bl.post("/programs", {"programName": "z1", "targets": ["zone-1", "zone-9"]})
    ).body
    zone2 = (await bl.post("/programs", {"programName": "z2", "targets": ["zone-2"]})).body
    names_a = [p["programName"] for p in (await ven_a.get("/programs")).body]
    names_b = [p["programName"] for p in (await ven_b.get("/programs")).body]
    assert names_a == ["public", "z1"] and names_b == ["public", "z2"]
    seen = (await ven_a.get(f"/programs/{zone1['id']}")).body
    assert seen["targets"] == ["zone-1"]  # zone-9 is someone else's business
    assert (await ven_a.get(f"/programs/{zone2['id']}")).status == 404
    assert (await bl.get(f"/programs/{zone1['id']}")).body["targets"] == ["zone-1", "zone-9"]
    # more grants: A now holds zone-1 and zone-7; asking for zone-7 shows only zone-7
    grant = {
        "objectType": "BL_VEN_REQUEST",
        "venName": "A",
        "clientID": ven_a.client_id,
        "targets": ["zone-1", "zone-7"],
    }
    await bl.put(f"/vens/{(await ven_a.get('/vens')).body[0]['id']}", grant)
    both = (
        await bl.post("/programs", {"programName": "z17", "targets": ["zone-1", "zone-7"]})
    ).body
    asked = (await ven_a.get("/programs", {"targets": "zone-7"})).body
    assert [(p["id"], p["targets"]) for p in asked] == [(both["id"], ["zone-7"])]
    e_public = (await bl.post("/events", {"programID": public["id"]})).body
    e_z2 = (await bl.post("/events", {"programID": public["id"], "targets": ["zone-2"]})).body
    e_in_z1 = (await bl.post("/events", {"programID": zone1["id"]})).body
    ids_a = [e["id"] for e in (await ven_a.get("/events")).body]
    ids_b = [e["id"] for e in (await ven_b.get("/events")).body]
    assert ids_a == [e_public["id"], e_in_z1["id"]]
    assert ids_b == [e_public["id"], e_z2["id"]]
    assert (await ven_a.get(f"/events/{e_z2['id']}")).status == 404
    assert (await ven_a.get("/events", {"programID": zone2["id"]})).body == []


async def test_ven_objects_are_private(vtn: Vtn) -> None:
    bl, ven_a, ven_b, ids = await setup_two_vens(vtn)
    assert [v["venName"] for v in (await ven_a.get("/vens")).body] == ["A"]
    assert (await ven_a.get(f"/vens/{ids['B']}")).status == 404
    assert [v["venName"] for v in (await bl.get("/vens")).body] == ["A", "B"]
    assert (await ven_a.get("/resources")).body == []
    resources_b = (await ven_b.get("/resources")).body
    assert [r["resourceName"] for r in resources_b] == ["battery-1"]
    # a VEN adds its own resource; it may not add one to another VEN's ven
    own = {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "pv", "venID": ids["A"]}
    assert (await ven_a.post("/resources", own)).status == 201
    theirs = {**own, "venID": ids["B"]}
    assert (await ven_a.post("/resources", theirs)).status == 404
    # only BL clients write targets (and clientIDs)
    grab = {
        "objectType": "BL_VEN_REQUEST",
        "venName": "A",
        "clientID": ven_a.client_id,
        "targets": ["zone-2"],
    }
    assert (await ven_a.put(f"/vens/{ids['A']}", grab)).status == 403
    # a VEN renaming its ven keeps the targets the BL granted
    renamed = await ven_a.put(
        f"/vens/{ids['A']}", {"objectType": "VEN_VEN_REQUEST", "venName": "A2"}
    )
    assert renamed.status == 200 and renamed.body["targets"] == ["zone-1"]
    assert (await ven_a.delete(f"/vens/{ids['B']}")).status == 404


async def test_reports_and_subscriptions_are_private(vtn: Vtn, webhook: object) -> None:
    from vtn_support import WebhookReceiver

    assert isinstance(webhook, WebhookReceiver)
    bl, ven_a, ven_b, _ = await setup_two_vens(vtn)
    program = (await bl.post("/programs", {"programName": "p"})).body
    event = (await bl.post("/events", {"programID": program["id"]})).body
    report = {
        "eventID": event["id"],
        "clientName": "A",
        "resources": [
            {
                "resourceName": "pv",
                "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [3.5]}]}],
            }
        ],
    }
    posted = await ven_a.post("/reports", report)
    assert posted.status == 201 and posted.body["clientID"] == ven_a.client_id
    assert (await bl.post("/reports", report)).status == 403  # write_reports is the VENs'
    assert [r["id"] for r in (await ven_a.get("/reports")).body] == [posted.body["id"]]
    assert (await ven_b.get("/reports")).body == []
    assert (await ven_b.get(f"/reports/{posted.body['id']}")).status == 404
    assert (await ven_b.put(f"/reports/{posted.body['id']}", report)).status == 404
    assert len((await bl.get("/reports", {"eventID": event["id"]})).body) == 1
    assert (await bl.get("/reports", {"clientName": "nobody"})).body == []
    subscription = {
        "clientName": "A",
        "objectOperations": [
            {"objects": ["EVENT"], "operations": ["UPDATE"], "callbackUrl": webhook.url()}
        ],
    }
    sub = (await ven_a.post("/subscriptions", subscription)).body
    assert sub["clientID"] == ven_a.client_id
    assert (await ven_b.get("/subscriptions")).body == []
    assert (await ven_b.get(f"/subscriptions/{sub['id']}")).status == 404
    probes = webhook.echo_checks
    assert (await ven_b.put(f"/subscriptions/{sub['id']}", subscription)).status == 404
    assert webhook.echo_checks == probes  # no echo probe for someone who may not write it
    assert len((await bl.get("/subscriptions", {"objects": "EVENT"})).body) == 1
    assert (await bl.get("/subscriptions", {"objects": "VEN"})).body == []


async def test_a_ven_cannot_probe_targets_it_was_not_granted(vtn: Vtn, webhook: object) -> None:
    """``targets=NAME`` (and a subscription's targets) match only the targets the VEN was
    granted: a name it was not granted finds nothing, like a name nobody uses, even where an
    object it may see carries that name."""
    from vtn_support import WebhookReceiver

    assert isinstance(webhook, WebhookReceiver)
    bl, ven_a, _, _ = await setup_two_vens(vtn)  # A holds zone-1, B zone-2
    program = (
        await bl.post("/programs", {"programName": "z19", "targets": ["zone-1", "zone-9"]})
    ).body
    event = (
        await bl.post("/events", {"programID": program["id"], "targets": ["zone-1", "zone-9"]})
    ).body
    for path, obj in (("/programs", program), ("/events", event)):
        assert (await ven_a.get(path, {"targets": "zone-9"})).body == []  # someone else's
        assert (await ven_a.get(path, {"targets": "zone-2"})).body == []  # B's
        assert (await ven_a.get(path, {"targets": "unused"})).body == []
        mine = (await ven_a.get(path, {"targets": "zone-1"})).body
        assert [(o["id"], o["targets"]) for o in mine] == [(obj["id"], ["zone-1"])]
        mixed = (await ven_a.get(path, [("targets", "zone-9"), ("targets", "zone-1")])).body
        assert [(o["id"], o["targets"]) for o in mixed] == [(obj["id"], ["zone-1"])]
        # a BL still finds objects by any of their targets
        assert [o["id"] for o in (await bl.get(path, {"targets": "zone-9"})).body] == [obj["id"]]

    def subscription(name: str, targets: list[str]) -> dict[str, object]:
        return {
            "clientName": name,
            "targets": targets,
            "objectOperations": [
                {
                    "objects": ["EVENT"],
                    "operations": ["CREATE"],
                    "callbackUrl": webhook.url(),
                    "bearerToken": name,
                }
            ],
        }

    assert (await ven_a.post("/subscriptions", subscription("probe", ["zone-9"]))).status == 201
    assert (await ven_a.post("/subscriptions", subscription("granted", ["zone-1"]))).status == 201
    before = len(webhook.notifications)
    await bl.post("/events", {"programID": program["id"], "targets": ["zone-1", "zone-9"]})
    await webhook.wait_for(before + 1)
    await asyncio.sleep(1.0)  # a notification for the probe would be out by now (same batch)
    assert webhook.authorizations[before:] == ["Bearer granted"]
