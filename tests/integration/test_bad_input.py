"""Hostile and broken requests: each gets the right status and an Error body, and nothing is
stored (DESIGN "Every XML body we accept is parsed with DTDs, entities and network off")."""

from __future__ import annotations

import pytest

from helpers import end_device_xml, register
from support import BACKENDS, Running

pytestmark = BACKENDS

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>
<changedTime>0</changedTime><deviceCategory>&lol9;</deviceCategory></EndDevice>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE EndDevice [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>
<changedTime>0</changedTime><deviceCategory>&xxe;</deviceCategory></EndDevice>"""

CASES = {
    "malformed": ("<EndDevice xmlns='urn:ieee:std:2030.5:ns'><lFDI>", 400),
    "billion-laughs": (BILLION_LAUGHS, 400),
    "xxe": (XXE, 400),
    "wrong-namespace": (
        '<EndDevice xmlns="urn:example:not-2030.5"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>'
        "<changedTime>0</changedTime></EndDevice>",
        400,
    ),
    "no-namespace": (
        "<EndDevice><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI><changedTime>0</changedTime></EndDevice>",
        400,
    ),
    "schema-invalid": (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>{sfdi}</sFDI><lFDI>{lfdi}</lFDI>'
        "<changedTime>0</changedTime></EndDevice>",
        400,
    ),
    "wrong-root": (
        '<DeviceStatus xmlns="urn:ieee:std:2030.5:ns"><changedTime>0</changedTime></DeviceStatus>',
        400,
    ),
    "empty": ("", 400),
    "oversized": (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI>'
        "<changedTime>0</changedTime>" + "<!--" + "x" * 70000 + "--></EndDevice>",
        413,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_registration_bodies(srv: Running, case: str) -> None:
    device = srv.pki.device_a
    template, status = CASES[case]
    body = template.replace("{lfdi}", device.lfdi).replace("{sfdi}", str(device.sfdi))
    client = srv.client(device)
    reply = await client.post("/edev", body)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/sep+xml")
    assert reply.find("s:reasonCode") == "0"
    _, listing = await srv.admin("GET", "/api/end-devices")
    assert listing["total"] == 0
    # the server is still healthy and the same connection keeps working
    assert (await client.get("/dcap")).status == 200


async def test_wrong_content_type_is_415(srv: Running) -> None:
    device = srv.pki.device_a
    client = srv.client(device)
    reply = await client.request(
        "POST",
        "/edev",
        end_device_xml(device.lfdi, device.sfdi),
        **{"Content-Type": "application/json"},
    )
    assert reply.status == 415
    assert reply.find("s:reasonCode") == "0"
    assert (await srv.admin("GET", "/api/end-devices"))[1]["total"] == 0


async def test_bad_document_put_keeps_the_previous_one(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    good = (
        '<DeviceStatus xmlns="urn:ieee:std:2030.5:ns"><changedTime>5</changedTime></DeviceStatus>'
    )
    assert (await client.put(href + "/dstat", good)).status in (201, 204)
    bad = good.replace(">5<", ">soon<")
    assert (await client.put(href + "/dstat", bad)).status == 400
    assert (await client.put(href + "/dstat", BILLION_LAUGHS)).status == 400
    assert (await client.get(href + "/dstat")).find("s:changedTime") == "5"


async def test_unknown_paths_404_and_wrong_methods_405(srv: Running) -> None:
    client = srv.client(srv.pki.device_a)
    for path in ("/nope", "/edev/abc", "/edev/1/xyz", "/dcap/extra"):
        reply = await client.get(path)
        assert reply.status == 404, path
        assert reply.find("s:reasonCode") == "0"
    for method, path, allowed in (
        ("POST", "/dcap", {"GET", "HEAD"}),
        ("DELETE", "/edev", {"GET", "HEAD", "POST"}),
        ("PUT", "/tm", {"GET", "HEAD"}),
        ("POST", "/edev/1", {"GET", "HEAD", "PUT", "DELETE"}),
    ):
        reply = await client.request(method, path)
        assert reply.status == 405, (method, path)
        assert set(reply.headers["Allow"].split(",")) == allowed
        assert reply.find("s:reasonCode") == "0"
