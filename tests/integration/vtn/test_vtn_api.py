"""The VTN's REST API over real HTTPS: every answer is checked against the (patched) 3.1.0
spec by the client; CRUD, server-assigned fields, names, paging, auth and Problem errors."""

from __future__ import annotations

import base64
import time

import aiohttp
import jwt
from vtn_support import VtnClient

from conftest import Vtn

from support import BACKENDS, settle_bus

pytestmark = BACKENDS

PROGRAM = {
    "programName": "summer-peak",
    "intervalPeriod": {"start": "2026-06-01T00:00:00Z", "duration": "P3M"},
    "payloadDescriptors": [
        {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "currency": "USD"}
    ],
    "attributes": [{"type": "LOCATION", "values": ["CA"]}],
}


def event_for(program_id: str, **extra: object) -> dict[str, object]:
    return {
        "programID": program_id,
        "eventName": "peak-1",
        "priority": 1,
        "intervalPeriod": {"start": "2030-07-01T17:00:00Z", "duration": "PT1H"},
        "intervals": [
            {"id": 0, "payloads": [{"type": "PRICE", "values": [0.42]}]},
            {"id": 1, "payloads": [{"type": "PRICE", "values": [0.55]}]},
        ],
        **extra,
    }


async def test_program_crud_assigns_metadata_and_ignores_clients_values(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    sent = {
        **PROGRAM,
        "id": "mine",
        "createdDateTime": "2000-01-01T00:00:00Z",
        "objectType": "EVENT",
    }
    created = await bl.post("/programs", sent)
    assert created.status == 201
    program = created.body
    assert program["id"] != "mine" and program["objectType"] == "PROGRAM"
    assert program["createdDateTime"] != "2000-01-01T00:00:00Z"
    assert program["payloadDescriptors"] == PROGRAM["payloadDescriptors"]
    assert created.headers["Location"].endswith(f"/programs/{program['id']}")
    assert (await bl.get(f"/programs/{program['id']}")).body == program
    changed = await bl.put(f"/programs/{program['id']}", {**PROGRAM, "programName": "renamed"})
    assert changed.status == 200 and changed.body["programName"] == "renamed"
    assert changed.body["createdDateTime"] == program["createdDateTime"]
    assert changed.body["modificationDateTime"] >= program["modificationDateTime"]
    deleted = await bl.delete(f"/programs/{program['id']}")
    assert deleted.status == 200 and deleted.body["programName"] == "renamed"
    assert (await bl.get(f"/programs/{program['id']}")).status == 404
    assert (await bl.get("/programs")).body == []


async def test_event_crud_and_filters(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    p1 = (await bl.post("/programs", PROGRAM)).body
    p2 = (await bl.post("/programs", {"programName": "other"})).body
    e1 = (await bl.post("/events", event_for(p1["id"], targets=["a"]))).body
    e2 = (await bl.post("/events", event_for(p2["id"], targets=["b"]))).body
    e3 = (await bl.post("/events", event_for(p1["id"]))).body
    assert e1["intervals"][1]["payloads"][0]["values"] == [0.55]
    listed = (await bl.get("/events")).body
    assert [e["id"] for e in listed] == [e1["id"], e2["id"], e3["id"]]  # creation order
    by_program = (await bl.get("/events", {"programID": p1["id"]})).body
    assert [e["id"] for e in by_program] == [e1["id"], e3["id"]]
    repeated = (await bl.get("/events", [("targets", "a"), ("targets", "b")])).body
    assert [e["id"] for e in repeated] == [e1["id"], e2["id"]]
    page = (await bl.get("/events", {"skip": "1", "limit": "1"})).body
    assert [e["id"] for e in page] == [e2["id"]]
    assert (await bl.get("/events", {"limit": "0"})).body == []
    assert (await bl.get("/events", {"limit": "51"})).status == 400
    assert (await bl.get("/events", {"skip": "x"})).status == 400
    unknown = await bl.post("/events", event_for("no-such-program"))
    assert unknown.status == 409
    # active=true drops events that have transpired
    past = event_for(p1["id"], intervalPeriod={"start": "2001-01-01T00:00:00Z", "duration": "PT1H"})
    old = (await bl.post("/events", past)).body
    active = (await bl.get("/events", {"active": "true"})).body
    assert old["id"] not in [e["id"] for e in active] and len(active) == 3
    assert len((await bl.get("/events", {"active": "false"})).body) == 4
    # deleting a program takes its events out of the view too
    await bl.delete(f"/programs/{p1['id']}")
    assert [e["id"] for e in (await bl.get("/events")).body] == [e2["id"]]
    assert (await bl.get(f"/events/{e1['id']}")).status == 404


async def test_names_are_unique_with_409(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    first = (await bl.post("/programs", PROGRAM)).body
    clash = await bl.post("/programs", PROGRAM)
    assert clash.status == 409 and clash.body["status"] == 409
    other = (await bl.post("/programs", {"programName": "b"})).body
    assert (await bl.put(f"/programs/{other['id']}", PROGRAM)).status == 409
    ven = {"objectType": "BL_VEN_REQUEST", "venName": "v1", "clientID": "c1"}
    v1 = (await bl.post("/vens", ven)).body
    assert (await bl.post("/vens", ven)).status == 409
    # a deleted name is free again
    await bl.delete(f"/programs/{first['id']}")
    assert (await bl.post("/programs", PROGRAM)).status == 201
    await bl.delete(f"/vens/{v1['id']}")
    assert (await bl.post("/vens", ven)).status == 201


async def test_bad_input_is_400_problem_and_stores_nothing(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    cases = [
        {},  # programName missing
        {"programName": 5},  # wrong type
        {"programName": ""},  # too short
        {"programName": "x", "targets": "a"},  # not an array
        {"programName": "x", "intervalPeriod": {"start": "yesterday"}},
        {"programName": "x", "intervalPeriod": {"duration": "1 hour"}},
        {"programName": "x", "payloadDescriptors": [{"objectType": "NOPE", "payloadType": "P"}]},
    ]
    for body in cases:
        answer = await bl.post("/programs", body)
        assert answer.status == 400, body
        assert set(answer.body) >= {"type", "title", "status", "detail"}
    for raw in (b"{not json", b"[1, 2]", b"null", b""):
        assert (await bl.call("POST", "/programs", raw=raw)).status == 400
    assert (await bl.get("/programs")).body == []
    # explicit nulls count as absent
    answer = await bl.post("/programs", {"programName": "n", "targets": None, "attributes": None})
    assert answer.status == 201 and "targets" not in answer.body


async def test_too_large_is_413_and_unknown_is_404(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    huge = {"programName": "big", "attributes": [{"type": "X", "values": ["y" * 300_000]}]}
    answer = await bl.post("/programs", huge)
    assert answer.status == 413 and answer.body["status"] == 413
    for kind in ("programs", "events", "reports", "subscriptions", "vens", "resources"):
        missing = await bl.get(f"/{kind}/does-not-exist")
        assert missing.status == 404 and missing.body["title"] == "Not Found"
        deleted = await bl.delete(f"/{kind}/does-not-exist")
        assert deleted.status == (403 if kind == "reports" else 404)  # BL: no write_reports
    assert (await bl.get("/programs")).body == []


async def test_tokens_basic_or_form_expiry_and_scopes(vtn: Vtn) -> None:
    status, created = await vtn.running.admin(
        "POST", "/api/vtn/clients", {"name": "ven-a", "role": "ven"}
    )
    assert status == 201
    client_id, secret = created["client_id"], created["client_secret"]
    token_url = vtn.base + "/auth/token"
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    async with vtn.session.post(
        token_url,
        data={"grant_type": "client_credentials", "scope": "read_all write_programs"},
        headers={"Authorization": f"Basic {basic}"},
    ) as response:
        assert response.status == 200
        by_basic = await response.json()
    assert by_basic["token_type"] == "Bearer" and by_basic["expires_in"] > 0
    assert "read_all" not in by_basic["scope"].split()  # asked, not granted, not an error
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with vtn.session.post(token_url, data=form) as response:
        assert response.status == 200
        by_form = await response.json()
    async with vtn.session.post(token_url, data={**form, "client_secret": "wrong"}) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_client"
    async with vtn.session.post(token_url, data={**form, "grant_type": "password"}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "unsupported_grant_type"
    ven = VtnClient(vtn.base, vtn.session, token=by_form["access_token"])
    assert (await ven.get("/programs")).status == 200
    assert (await ven.post("/programs", PROGRAM)).status == 403  # no write_programs
    assert (await ven.get("/programs", None)).status == 200
    anonymous = vtn.anonymous()
    assert (await anonymous.get("/programs")).status == 401
    assert (await anonymous.call("GET", "/programs", token="not-a-jwt")).status == 401
    claims = jwt.decode(by_form["access_token"], options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "scope": "read_all write_programs"},
        "a-guessed-key-that-is-long-enough-000",
        "HS256",
    )
    assert (await anonymous.call("GET", "/programs", token=forged)).status == 401
    server = vtn.running.server
    assert server.vtn_auth is not None
    expired_claims = {**claims, "exp": int(time.time()) - 10}
    expired = jwt.encode(expired_claims, server.vtn_auth._signing_key, "HS256")
    answer = await anonymous.call("GET", "/programs", token=expired)
    assert answer.status == 401 and "expired" in answer.body["detail"]
    auth_server = await anonymous.get("/auth/server")
    assert auth_server.body["tokenURL"] == token_url
    # removing the client ends its tokens
    assert (await vtn.running.admin("DELETE", "/api/vtn/clients/ven-a"))[0] == 204
    assert (await ven.get("/programs")).status == 401
    status, listed = await vtn.running.admin("GET", "/api/vtn/clients")
    assert status == 200 and listed == []


async def test_every_error_is_a_problem(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    async with vtn.session.patch(vtn.base + "/programs") as response:
        assert response.status == 405
        body = await response.json()
    assert body["status"] == 405 and body["title"]
    async with vtn.session.get(vtn.base + "/nowhere") as response:
        assert response.status == 404 and (await response.json())["status"] == 404
    assert (await bl.get("/notifiers")).body["WEBHOOK"] is True


async def test_plain_http_for_labs(make_vtn: object) -> None:
    from conftest import VtnFactory

    assert callable(make_vtn)
    factory: VtnFactory = make_vtn  # type: ignore[assignment]
    lab = await factory(vtn_plain_http=True)
    url = f"http://127.0.0.1:{lab.running.server.vtn_port}/openadr3/3.1.0/auth/server"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert (await response.json())["tokenURL"].startswith("http://")


async def test_a_repeated_poll_runs_no_query_and_a_write_shows_at_once(vtn: Vtn) -> None:
    from sqlalchemy import event

    bl = await vtn.client("bl", "bl")
    ven = await vtn.client("ven", "ven")
    program = (await bl.post("/programs", PROGRAM)).body
    await bl.post("/events", event_for(program["id"]))
    await settle_bus(vtn.running)  # PostgreSQL echoes our own writes' invalidations later
    store = vtn.running.server.store
    assert store is not None
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        params = {"programID": program["id"]}
        first = (await ven.get("/events", params)).body
        statements.clear()
        for _ in range(5):
            assert (await ven.get("/events", params)).body == first
        polls = [s for s in statements if "oadr_object" in s or "vtn_client" in s]
        assert polls == []  # served from memory: no query at all
        await bl.post("/events", event_for(program["id"], eventName="second"))
        assert len((await ven.get("/events", params)).body) == 2  # the write shows at once
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)


async def test_paging_is_stable_for_every_kind(vtn: Vtn) -> None:
    bl = await vtn.client("bl", "bl")
    names = [f"v{i}" for i in range(7)]
    for name in names:
        body = {"objectType": "BL_VEN_REQUEST", "venName": name, "clientID": f"c-{name}"}
        assert (await bl.post("/vens", body)).status == 201
    pages = [
        [v["venName"] for v in (await bl.get("/vens", {"skip": str(s), "limit": "3"})).body]
        for s in (0, 3, 6)
    ]
    assert pages == [names[0:3], names[3:6], names[6:7]]
    assert [v["venName"] for v in (await bl.get("/vens", {"venName": "v4"})).body] == ["v4"]
    first = (await bl.get("/vens", {"limit": "1"})).body[0]
    resource = {
        "objectType": "BL_RESOURCE_REQUEST",
        "venID": first["id"],
        "clientID": first["clientID"],
    }
    for name in ("r1", "r2", "r3"):
        await bl.post("/resources", {**resource, "resourceName": name})
    assert (await bl.post("/resources", {**resource, "resourceName": "r1"})).status == 409
    second = (await bl.get("/resources", {"venID": first["id"], "skip": "1", "limit": "1"})).body
    assert [r["resourceName"] for r in second] == ["r2"]


async def test_ven_and_resource_requests_without_object_type(vtn: Vtn) -> None:
    """A field client that leaves objectType out (or sends null) of a ven or resource request
    means the kind its role sends: VEN_*_REQUEST for a VEN client, BL_*_REQUEST for a BL."""
    bl = await vtn.client("bl", "bl")
    ven = await vtn.client("fleet", "ven")
    created = await ven.post("/vens", {"venName": "fleet-1"})
    assert created.status == 201, created.body
    assert created.body["clientID"] == ven.client_id and created.body["objectType"] == "VEN"
    ven_id = created.body["id"]
    assert (await ven.post("/vens", {"objectType": None, "venName": "fleet-2"})).status == 201
    # a VEN's body is a VEN request: the BL-only properties in it change nothing
    renamed = await ven.put(
        f"/vens/{ven_id}", {"venName": "fleet-1b", "clientID": "someone", "targets": ["zone-9"]}
    )
    assert renamed.status == 200
    assert renamed.body["clientID"] == ven.client_id and "targets" not in renamed.body
    # ...and saying BL_VEN_REQUEST itself is still refused
    claimed = {"objectType": "BL_VEN_REQUEST", "venName": "x", "clientID": ven.client_id}
    assert (await ven.post("/vens", claimed)).status == 403
    resource = await ven.post("/resources", {"resourceName": "pv", "venID": ven_id})
    assert resource.status == 201 and resource.body["clientID"] == ven.client_id
    # a BL without objectType: a BL request (clientID and targets honoured, clientID required)
    granted = await bl.put(
        f"/vens/{ven_id}", {"venName": "fleet-1b", "clientID": ven.client_id, "targets": ["z1"]}
    )
    assert granted.status == 200 and granted.body["targets"] == ["z1"]
    missing = await bl.post("/vens", {"venName": "no-client"})
    assert missing.status == 400 and "clientID" in missing.body["detail"]
    battery = {"resourceName": "bat", "venID": ven_id, "clientID": ven.client_id, "targets": ["z1"]}
    answer = await bl.post("/resources", battery)
    assert answer.status == 201 and answer.body["targets"] == ["z1"]
    names = {v["venName"] for v in (await ven.get("/vens")).body}
    assert names == {"fleet-1b", "fleet-2"}
