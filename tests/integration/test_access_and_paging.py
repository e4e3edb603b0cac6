"""Access control between two devices and aggregators (CSIP IG §5), and 2030.5 list paging
(IEEE 2030.5 §5.5 / CORE-004), over real mutual TLS on SQLite and PostgreSQL."""

from __future__ import annotations

from csip.pki.identity import sfdi_from_lfdi
from csip.pki.testpki import IssuedCert

from helpers import (
    DEVICE_STATUS,
    aggregator_fleet,
    end_device_xml,
    make_aggregator,
    random_lfdi,
    register,
)
from support import BACKENDS, Running

pytestmark = BACKENDS


async def test_devices_cannot_see_each_other(srv: Running) -> None:
    a, b = srv.pki.device_a, srv.pki.device_b
    href_a = await register(srv, a)
    href_b = await register(srv, b)
    client_a = srv.client(a)
    for path in (href_b, href_b + "/rg", href_b + "/fsa", href_b + "/dstat"):
        reply = await client_a.get(path)
        assert reply.status == 404, path
        assert reply.find("s:reasonCode") == "0"
    assert (await client_a.put(href_b + "/dstat", DEVICE_STATUS)).status == 404
    assert (await client_a.delete(href_b)).status == 404
    listing = await client_a.get("/edev?l=10")
    assert listing.xml().get("all") == "1"
    assert [e.get("href") for e in listing.xml()] == [href_a]
    # B is untouched
    assert (await srv.client(b).get(href_b)).status == 200
    assert (await srv.client(b).get(href_b + "/dstat")).status == 404


async def test_aggregator_registers_and_sees_only_its_devices(srv: Running) -> None:
    agg, agg2 = srv.pki.aggregator, srv.pki.aggregator_2
    await make_aggregator(srv, "agg-one", agg.lfdi)
    await make_aggregator(srv, "agg-two", agg2.lfdi)
    client = srv.client(agg)
    hrefs = []
    for _ in range(3):
        lfdi = random_lfdi()
        reply = await client.post("/edev", end_device_xml(lfdi, sfdi_from_lfdi(lfdi)))
        assert reply.status == 201, reply.body
        hrefs.append(reply.headers["Location"])
    listing = await client.get("/edev?l=10")
    assert listing.xml().get("all") == "4"  # its own EndDevice first (issue 9 item 8)
    own, *managed = listing.xml()
    assert own.findtext("{urn:ieee:std:2030.5:ns}lFDI") == agg.lfdi
    assert sorted(e.get("href") for e in managed) == sorted(hrefs)
    assert (await client.get("/dcap")).link("EndDeviceListLink").get("all") == "4"
    for href in hrefs:
        assert (await client.get(href)).status == 200
        assert (await client.put(href + "/dstat", DEVICE_STATUS)).status in (201, 204)

    other = srv.client(agg2)
    assert (await other.get("/edev")).xml().get("all") == "1"  # only its own EndDevice
    for href in hrefs:
        assert (await other.get(href)).status == 404
        assert (await other.get(href + "/dstat")).status == 404
    device_href = await register(srv, srv.pki.device_a)
    assert (await client.get(device_href)).status == 404
    assert (await srv.client(srv.pki.device_a).get(hrefs[0])).status == 404


async def test_aggregator_list_is_its_fleet_plus_its_own_end_device(srv: Running) -> None:
    """bench/poll.py's setup: a device certificate registers in band, then an aggregator's
    fleet is registered through the admin bulk endpoint. The aggregator's EndDeviceList is
    the devices it manages plus its certificate's own EndDevice (made on its first request,
    CSIP-AUS aggregator model), never the other certificate's device: all = fleet + 1."""
    device_href = await register(srv, srv.pki.device_a)
    agg = srv.pki.aggregator
    lfdis = await aggregator_fleet(srv, "agg-bulk", agg.lfdi, 20)
    client = srv.client(agg)
    listing = (await client.get("/edev?s=0&l=255")).xml()
    assert (listing.get("all"), listing.get("results")) == ("21", "21")
    shown = [e.findtext("{urn:ieee:std:2030.5:ns}lFDI") for e in listing]
    assert shown[0] == agg.lfdi and sorted(shown[1:]) == sorted(lfdis)
    assert srv.pki.device_a.lfdi not in shown
    assert device_href not in {e.get("href") for e in listing}
    assert (await client.get(device_href)).status == 404
    status, body = await srv.admin("GET", "/api/end-devices?aggregator=agg-bulk&limit=100")
    assert status == 200
    own = [i["lfdi"] for i in body["items"] if i["aggregator_self"]]
    assert own == [agg.lfdi] and len(body["items"]) == 21


async def test_aggregator_must_give_consistent_lfdi_and_sfdi(srv: Running) -> None:
    await make_aggregator(srv, "agg-one", srv.pki.aggregator.lfdi)
    client = srv.client(srv.pki.aggregator)
    lfdi = random_lfdi()
    wrong = await client.post("/edev", end_device_xml(lfdi, sfdi_from_lfdi(lfdi) + 1))
    assert wrong.status == 400
    assert wrong.find("s:reasonCode") == "1"
    missing = (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>1</sFDI>'
        "<changedTime>0</changedTime></EndDevice>"
    )
    assert (await client.post("/edev", missing)).status == 400
    assert (await client.get("/edev")).xml().get("all") == "1"  # its own EndDevice only


async def test_detached_or_expired_aggregator_certificate_loses_its_devices(srv: Running) -> None:
    agg = srv.pki.aggregator
    await make_aggregator(srv, "agg-one", agg.lfdi)
    status, _ = await srv.admin(
        "POST", "/api/end-devices", [{"lfdi": random_lfdi(), "aggregator": "agg-one"}]
    )
    assert status == 201
    client = srv.client(agg)
    assert (await client.get("/edev")).xml().get("all") == "2"  # with its own EndDevice
    # Expired or detached, the certificate is no aggregator's: and with no
    # HardwareModuleName it is no device's either, so every request is refused.
    await srv.admin("PUT", f"/api/aggregators/agg-one/certificates/{agg.lfdi}", {"expires_at": 1})
    assert (await srv.client(agg).get("/edev")).status == 403
    await srv.admin("PUT", f"/api/aggregators/agg-one/certificates/{agg.lfdi}", {})
    assert (await srv.client(agg).get("/edev")).xml().get("all") == "2"
    assert (await srv.admin("DELETE", f"/api/aggregators/agg-one/certificates/{agg.lfdi}"))[
        0
    ] == 204
    assert (await srv.client(agg).get("/edev")).status == 403


async def test_disabled_certificate_gets_403_from_its_next_request(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.get(href)).status == 200  # cached from here on
    status, body = await srv.admin("PUT", f"/api/certificates/{device.lfdi}", {"enabled": False})
    assert (status, body["enabled"]) == (200, False)
    for path in ("/dcap", href, "/tm"):
        reply = await srv.client(device).get(path)
        assert reply.status == 403, path
        assert reply.find("s:reasonCode") == "0"
    assert (await srv.client(srv.pki.device_b).get("/dcap")).status == 200
    await srv.admin("PUT", f"/api/certificates/{device.lfdi}", {"enabled": True})
    assert (await srv.client(device).get(href)).status == 200


async def paged(srv: Running, client_cert: IssuedCert, query: str) -> tuple[str, str, list[str]]:
    reply = await srv.client(client_cert).get("/edev" + query)
    assert reply.status == 200, (query, reply.body)
    root = reply.xml()
    sfdis = [e.findtext("{urn:ieee:std:2030.5:ns}sFDI") or "" for e in root]
    return root.get("all") or "", root.get("results") or "", sfdis


async def test_list_paging_s_and_l(srv: Running) -> None:
    agg = srv.pki.aggregator
    lfdis = await aggregator_fleet(srv, "agg-one", agg.lfdi, 7)
    expected = sorted(str(sfdi_from_lfdi(x)) for x in lfdis)
    expected.sort(key=int)
    expected.insert(0, str(agg.sfdi))  # its own EndDevice first (issue 9 item 8), then sFDI

    assert await paged(srv, agg, "") == ("8", "1", expected[:1])  # l defaults to 1
    assert await paged(srv, agg, "?l=3") == ("8", "3", expected[:3])
    assert await paged(srv, agg, "?s=3&l=3") == ("8", "3", expected[3:6])
    assert await paged(srv, agg, "?s=6&l=3") == ("8", "2", expected[6:])
    assert await paged(srv, agg, "?s=8&l=3") == ("8", "0", [])
    assert await paged(srv, agg, "?s=100") == ("8", "0", [])
    assert await paged(srv, agg, "?l=0") == ("8", "0", [])
    assert await paged(srv, agg, "?l=4294967295") == ("8", "8", expected)  # clamped
    walked: list[str] = []
    for start in range(0, 8, 3):
        walked += (await paged(srv, agg, f"?s={start}&l=3"))[2]
    assert walked == expected  # stable order, no duplicates or gaps


async def test_bad_paging_values_are_400(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    for query in ("?s=-1", "?l=abc", "?s=4294967296", "?a=1.5", "?l="):
        reply = await client.get("/edev" + query)
        assert reply.status == 400, query
        assert reply.find("s:reasonCode") == "0"
