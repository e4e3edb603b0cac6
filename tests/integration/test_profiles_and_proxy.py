"""Schema profiles (CLARIFICATIONS "Schemas: two profiles, two validators") and identity from a
trusted TLS-terminating proxy (and only from one)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from csip.errors import SchemaMissingError
from csip.sep2 import schema

from helpers import end_device_xml, register
from support import Running, ServerFactory


@pytest.mark.parametrize("profile", ["csip", "csip-aus"])
async def test_walk_validates_under_each_profile(make_server: ServerFactory, profile: str) -> None:
    srv = await make_server(profile=profile)
    status, body = await srv.admin("GET", "/api/status")
    assert (status, body["profile"]) == (200, profile)
    href = await register(srv, srv.pki.device_a)
    client = srv.client(srv.pki.device_a)  # validates every body with the profile's schema
    for path in ("/dcap", "/tm", "/edev?l=5", href, href + "/fsa", href + "/rg"):
        assert (await client.get(path)).status == 200, path


async def test_csip_aus_elements_are_rejected_by_the_csip_profile(srv: Running) -> None:
    device = srv.pki.device_a
    body = end_device_xml(device.lfdi, device.sfdi).replace(
        "</EndDevice>",
        '<ConnectionPointLink xmlns="https://csipaus.org/ns" href="/cp"/></EndDevice>',
    )
    reply = await srv.client(device).post("/edev", body)
    assert reply.status == 400
    assert (await srv.admin("GET", "/api/end-devices"))[1]["total"] == 0


def test_user_supplied_schema_directory(tmp_path: Path) -> None:
    pinned = schema.default_schema_dir()
    own = tmp_path / "ieee"
    shutil.copytree(pinned, own)
    loaded = schema.load("csip-aus", own)
    assert not loaded.pinned
    assert loaded.sha256["sep.xsd"] == schema.PINNED_SHA256["sep.xsd"]
    (own / "csipaus-ext.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:other"/>'
    )
    with pytest.raises(SchemaMissingError, match="targetNamespace"):
        schema.load("csip", own)
    (own / "sep.xsd").unlink()
    with pytest.raises(SchemaMissingError, match=r"sep\.xsd is missing"):
        schema.load("csip", own)


def test_pinned_directory_must_match_the_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "schemas" / "xsd"
    shutil.copytree(schema.default_schema_dir(), copy)
    with (copy / "sep.xsd").open("a") as handle:
        handle.write("<!-- edited -->\n")
    monkeypatch.setattr(schema, "default_schema_dir", lambda: copy)
    with pytest.raises(SchemaMissingError, match="expected 2a4fe992"):
        schema.load("csip")


def forwarded(srv: Running) -> dict[str, str]:
    pem = srv.pki.device_b.cert_path.read_text().split("-----END CERTIFICATE-----")[0]
    return {"X-SSL-Client-Cert": quote(pem + "-----END CERTIFICATE-----\n")}


async def test_forwarded_certificate_is_honoured_only_from_a_trusted_proxy(
    make_server: ServerFactory,
) -> None:
    plain = await make_server()
    await register(plain, plain.pki.device_b)
    client = plain.client(plain.pki.device_a)
    ignored = await client.request("GET", "/edev?l=5", **forwarded(plain))
    assert ignored.xml().get("all") == "0"  # device A's own view: the header was ignored

    behind_proxy = await make_server(trusted_proxies=["127.0.0.1"])  # same database
    proxy = behind_proxy.client(behind_proxy.pki.device_a)
    honoured = await proxy.request("GET", "/edev?l=5", **forwarded(behind_proxy))
    assert honoured.xml().get("all") == "1"
    assert honoured.find("s:EndDevice/s:lFDI") == behind_proxy.pki.device_b.lfdi
