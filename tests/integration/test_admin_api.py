"""The utility's admin API over real HTTP: auth, its OpenAPI document, and the operations a
lab drives unattended (CLARIFICATIONS "What a lab needs from the admin API")."""

from __future__ import annotations

import secrets

import aiohttp
from openapi_spec_validator import validate

from csip.pki.identity import sfdi_from_lfdi

from helpers import register
from support import BACKENDS, Running

pytestmark = BACKENDS


def lfdi() -> str:
    return secrets.token_hex(20).upper()


async def raw(srv: Running, method: str, path: str, **kwargs: object) -> tuple[int, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, srv.admin_base + path, **kwargs) as response,  # type: ignore[arg-type]
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def test_requests_without_the_token_are_401(srv: Running) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        status, body = await raw(srv, "GET", "/api/end-devices", headers=headers)
        assert status == 401
        assert isinstance(body, dict) and body["status"] == 401


async def test_openapi_document_is_valid_and_lists_every_route(srv: Running) -> None:
    status, document = await raw(srv, "GET", "/openapi.json")
    assert status == 200 and isinstance(document, dict)
    validate(document)
    assert srv.server.admin is not None
    routed = set()
    from csip.web.admin_app import ADMIN

    (admin_app,) = [r.app for r in srv.server.runners if ADMIN in r.app]
    for resource in admin_app.router.resources():
        info = resource.get_info()
        if "app" in info or info.get("path") == "/console":
            continue  # the operator console: HTML pages with their own auth, not the JSON API
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method != "HEAD" and path != "/openapi.json":
                routed.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert routed == documented


async def test_status_names_profile_and_schemas(srv: Running) -> None:
    status, body = await srv.admin("GET", "/api/status")
    assert status == 200
    assert body["profile"] == "csip"
    assert body["schemas"]["pinned"] is True
    assert set(body["schemas"]["sha256"]) == {"sep.xsd", "csipaus-core.xsd", "csipaus-ext.xsd"}


async def test_preregistration_is_idempotent_and_visible_to_the_device(srv: Running) -> None:
    device = srv.pki.device_a
    path = f"/api/end-devices/{device.lfdi}"
    status, body = await srv.admin("PUT", path, {"sfdi": device.sfdi, "pin": 123455})
    assert status == 201
    assert (body["lfdi"], body["sfdi"], body["pin"]) == (device.lfdi, device.sfdi, 123455)
    status, again = await srv.admin("PUT", path, {"sfdi": device.sfdi, "pin": 123455})
    assert status == 200 and again["href"] == body["href"]
    status, listing = await srv.admin("GET", "/api/end-devices")
    assert listing["total"] == 1
    client = srv.client(device)
    assert (await client.get(body["href"] + "/rg")).find("s:pIN") == "123455"
    status, _ = await srv.admin("PUT", path, {"pin": 111115})
    assert (await client.get(body["href"] + "/rg")).find("s:pIN") == "111115"


async def test_preregistration_rejects_bad_values_and_stores_nothing(srv: Running) -> None:
    device = srv.pki.device_a
    cases = [
        (f"/api/end-devices/{device.lfdi}", {"sfdi": device.sfdi + 1}),
        (f"/api/end-devices/{device.lfdi}", {"pin": 123456}),  # bad check digit
        ("/api/end-devices/not-hex", {}),
        (f"/api/end-devices/{device.lfdi}", {"aggregator": "nobody"}),
        (f"/api/end-devices/{device.lfdi}", {"unknown_field": 1}),
        (f"/api/end-devices/{device.lfdi}", {"pin": "abc"}),
    ]
    for path, body in cases:
        status, reply = await srv.admin("PUT", path, body)
        assert status in (400, 404), (path, body, status)
        assert reply["detail"]
    assert (await srv.admin("GET", "/api/end-devices"))[1]["total"] == 0
    status, _ = await raw(
        srv,
        "PUT",
        f"/api/end-devices/{device.lfdi}",
        data=b"{not json",
        headers={"Authorization": f"Bearer {srv.admin_token}"},
    )
    assert status == 400


async def test_bulk_preregistration_is_all_or_nothing(srv: Running) -> None:
    good = [{"lfdi": lfdi()} for _ in range(50)]
    status, body = await srv.admin("POST", "/api/end-devices", good)
    assert (status, body["created"]) == (201, 50)
    bad = [{"lfdi": lfdi()} for _ in range(5)] + [{"lfdi": "XYZ"}]
    status, _ = await srv.admin("POST", "/api/end-devices", bad)
    assert status == 400
    duplicate = [{"lfdi": good[0]["lfdi"]}, {"lfdi": good[0]["lfdi"]}]
    assert (await srv.admin("POST", "/api/end-devices", duplicate))[0] == 400
    assert (await srv.admin("GET", "/api/end-devices?limit=1"))[1]["total"] == 50
    status, body = await srv.admin("POST", "/api/end-devices", good[:3])
    assert (status, body["created"], body["updated"]) == (200, 0, 3)


async def test_delete_end_device_by_lfdi_is_idempotent_and_allows_re_registration(
    srv: Running,
) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.get(href)).status == 200
    assert (await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}"))[0] == 204
    assert (await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}"))[0] == 204
    assert (await client.get(href)).status == 404
    assert (await srv.admin("GET", f"/api/end-devices/{device.lfdi}"))[0] == 404
    await register(srv, device)


async def test_aggregators_and_certificates(srv: Running) -> None:
    agg = srv.pki.aggregator
    assert (await srv.admin("POST", "/api/aggregators", {"name": "fleet-co"}))[0] == 201
    assert (await srv.admin("POST", "/api/aggregators", {"name": "fleet-co"}))[0] == 409
    assert (await srv.admin("POST", "/api/aggregators", {"name": "bad name!"}))[0] == 400
    status, cert = await srv.admin(
        "PUT", f"/api/aggregators/fleet-co/certificates/{agg.lfdi}", {"expires_at": 4102444800}
    )
    assert status == 200 and cert["aggregator"] == "fleet-co"
    status, certs = await srv.admin("GET", "/api/aggregators/fleet-co/certificates")
    assert [c["lfdi"] for c in certs] == [agg.lfdi]
    assert (await srv.admin("POST", "/api/aggregators", {"name": "other"}))[0] == 201
    status, _ = await srv.admin("PUT", f"/api/aggregators/other/certificates/{agg.lfdi}", {})
    assert status == 409
    owned = lfdi()
    await srv.admin("PUT", f"/api/end-devices/{owned}", {"aggregator": "fleet-co"})
    status, listing = await srv.admin("GET", "/api/end-devices?aggregator=fleet-co")
    assert [d["lfdi"] for d in listing["items"]] == [owned]
    assert listing["items"][0]["sfdi"] == sfdi_from_lfdi(owned)
    client = srv.client(agg)
    assert (await client.get("/edev")).xml().get("all") == "2"  # and its own EndDevice
    assert (await srv.admin("DELETE", "/api/aggregators/fleet-co"))[0] == 204
    assert (await srv.client(agg).get("/edev")).status == 403


async def test_post_rate_default_and_per_device(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.get(href)).find("s:postRate") is None
    status, rates = await srv.admin("PUT", "/api/rates", {"post_rate": 300})
    assert status == 200 and rates["post_rate"] == 300
    assert (await client.get(href)).find("s:postRate") == "300"
    await srv.admin("PUT", f"/api/end-devices/{device.lfdi}", {"post_rate": 60})
    assert (await client.get(href)).find("s:postRate") == "60"
    status, rates = await srv.admin("GET", "/api/rates")
    assert rates["post_rate"] == 300 and rates["poll_rates"]["DeviceCapability"] == 900


async def test_reset_removes_lab_devices(srv: Running) -> None:
    href = await register(srv, srv.pki.device_a)
    await srv.admin("POST", "/api/end-devices", [{"lfdi": lfdi()} for _ in range(3)])
    status, body = await srv.admin("POST", "/api/reset")
    assert (status, body["removed_end_devices"]) == (200, 4)
    assert (await srv.client(srv.pki.device_a).get(href)).status == 404


async def test_unknown_admin_paths_and_methods(srv: Running) -> None:
    assert (await srv.admin("GET", "/api/nothing"))[0] == 404
    status, body = await srv.admin("DELETE", "/api/status")
    assert status == 405 and body["status"] == 405
