"""The device walk of CSIP IG §5 over real mutual TLS, on SQLite and PostgreSQL.

/dcap -> /edev -> POST EndDevice -> /edev/{id} -> Registration, FSA list, device documents.
"""

from __future__ import annotations

import time

from helpers import DEVICE_INFORMATION, DEVICE_STATUS, POWER_STATUS, end_device_xml, register
from support import BACKENDS, Running, ServerFactory

pytestmark = BACKENDS


async def test_full_walk_of_a_new_device(srv: Running) -> None:
    device = srv.pki.device_a
    client = srv.client(device)

    dcap = await client.get("/dcap")
    assert dcap.status == 200
    assert dcap.headers["Content-Type"].startswith("application/sep+xml")
    root = dcap.xml()
    assert root.get("href") == "/dcap" and root.get("pollRate") == "900"
    assert dcap.find("s:TimeLink") is None  # links carry attributes, not text
    links = {child.tag.split("}")[1]: child.attrib for child in root}
    assert links["TimeLink"]["href"] == "/tm"
    assert links["EndDeviceListLink"] == {"href": "/edev", "all": "0"}

    empty = await client.get("/edev")
    assert empty.status == 200
    assert (empty.xml().get("all"), empty.xml().get("results")) == ("0", "0")

    created = await client.post("/edev", end_device_xml(device.lfdi, device.sfdi))
    assert created.status == 201
    href = created.headers["Location"]
    assert href.startswith("/edev/")

    edev = await client.get(href)
    assert edev.status == 200
    assert edev.find("s:lFDI") == device.lfdi
    assert edev.find("s:sFDI") == str(device.sfdi)
    assert edev.find("s:changedTime") == "1700000000"

    listing = await client.get("/edev?l=10")
    assert (listing.xml().get("all"), listing.xml().get("results")) == ("1", "1")
    dcap_after = await client.get("/dcap")
    assert dcap_after.link("EndDeviceListLink").get("all") == "1"

    fsa = await client.get(href + "/fsa")
    assert fsa.status == 200
    assert (fsa.xml().get("all"), fsa.xml().get("results")) == ("0", "0")

    registration = await client.get(href + "/rg")
    assert registration.status == 200
    assert registration.find("s:pIN") == "111115"
    registered = int(registration.find("s:dateTimeRegistered") or 0)
    assert abs(registered - time.time()) < 60


async def test_head_works_wherever_get_does(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    href = await register(srv, srv.pki.device_a)
    for path in ("/dcap", "/tm", "/edev", href, href + "/fsa", href + "/rg"):
        get = await client.get(path)
        head = await client.request("HEAD", path)
        assert head.status == get.status == 200, path
        assert head.body == b""
        assert head.headers["Content-Type"] == get.headers["Content-Type"]


async def test_second_registration_of_same_lfdi_is_refused(srv: Running) -> None:
    href = await register(srv, srv.pki.device_a)
    client = srv.client(srv.pki.device_a)
    again = await client.post("/edev", end_device_xml(srv.pki.device_a.lfdi, srv.pki.device_a.sfdi))
    assert again.status == 409
    assert again.find("s:reasonCode") == "0"
    assert again.headers["Location"] == href
    listing = await client.get("/edev?l=10")
    assert listing.xml().get("all") == "1"


async def test_device_cannot_register_another_lfdi(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    other = srv.pki.device_b
    reply = await client.post("/edev", end_device_xml(other.lfdi, other.sfdi))
    assert reply.status == 403
    assert reply.find("s:reasonCode") is not None
    status, body = await srv.admin("GET", "/api/end-devices")
    assert status == 200 and body["total"] == 0


async def test_put_end_device_updates_changed_time_but_not_identity(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    ok = await client.put(href, end_device_xml(device.lfdi, device.sfdi, changed=1800000000))
    assert ok.status == 204
    assert (await client.get(href)).find("s:changedTime") == "1800000000"
    other = srv.pki.device_b
    refused = await client.put(href, end_device_xml(other.lfdi, other.sfdi))
    assert refused.status == 400
    assert (await client.get(href)).find("s:lFDI") == device.lfdi


async def test_device_documents_round_trip_exactly(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.get(href + "/di")).status == 404
    documents = {
        "di": DEVICE_INFORMATION.format(lfdi=device.lfdi),
        "dstat": DEVICE_STATUS,
        "ps": POWER_STATUS,
    }
    for part, body in documents.items():
        assert (await client.put(f"{href}/{part}", body)).status in (201, 204)
    info = await client.get(href + "/di")
    assert info.xml().get("href") == href + "/di"
    assert info.find("s:mfModel") == "Battery 9000"
    assert (await client.get(href + "/dstat")).find("s:onCount") == "3"
    assert (await client.get(href + "/ps")).find("s:estimatedChargeRemaining") == "8250"
    wrong = DEVICE_INFORMATION.format(lfdi=srv.pki.device_b.lfdi)
    assert (await client.put(href + "/di", wrong)).status == 400
    assert (await client.get(href + "/di")).find("s:lFDI") == device.lfdi


async def test_delete_end_device_removes_it(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.put(href + "/dstat", DEVICE_STATUS)).status in (201, 204)
    assert (await client.delete(href)).status == 204
    assert (await client.get(href)).status == 404
    assert (await client.get(href + "/dstat")).status == 404
    assert (await client.get("/edev")).xml().get("all") == "0"
    # and it can register again in band
    assert (await client.post("/edev", end_device_xml(device.lfdi, device.sfdi))).status == 201


async def test_in_band_registration_can_be_switched_off(make_server: ServerFactory) -> None:
    srv = await make_server(registration_in_band=False)
    device = srv.pki.device_a
    reply = await srv.client(device).post("/edev", end_device_xml(device.lfdi, device.sfdi))
    assert reply.status == 403
    status, _ = await srv.admin("PUT", f"/api/end-devices/{device.lfdi}", {"pin": 222220})
    assert status == 201
    listing = await srv.client(device).get("/edev?l=5")
    assert listing.xml().get("all") == "1"
    href = listing.xml()[0].get("href")
    assert (await srv.client(device).get(href + "/rg")).find("s:pIN") == "222220"


async def test_out_of_band_registration_can_be_switched_off(make_server: ServerFactory) -> None:
    srv = await make_server(registration_out_of_band=False)
    status, body = await srv.admin("PUT", f"/api/end-devices/{srv.pki.device_a.lfdi}", {})
    assert status == 409
    assert "out-of-band" in body["detail"]


async def test_time_resource_follows_zone_and_server_clock(make_server: ServerFactory) -> None:
    srv = await make_server(timezone="Australia/Sydney")
    client = srv.client(srv.pki.device_a)
    reply = await client.get("/tm")
    assert reply.status == 200
    assert reply.find("s:tzOffset") == "36000"
    assert reply.find("s:dstOffset") == "3600"
    now = int(reply.find("s:currentTime") or 0)
    assert abs(now - time.time()) < 5
    assert reply.find("s:quality") == "4"
    status, _ = await srv.admin("PUT", "/api/clock", {"advance": 86400})
    assert status == 200
    moved = await client.get("/tm")
    assert int(moved.find("s:currentTime") or 0) - now >= 86400
    assert moved.find("s:quality") == "7"
