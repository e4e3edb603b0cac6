"""2030.5 documents and steps that several test modules use."""

from __future__ import annotations

import secrets

from csip.pki.testpki import IssuedCert

from support import Running


def end_device_xml(lfdi: str, sfdi: int, changed: int = 1700000000) -> str:
    return (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
        f"<lFDI>{lfdi}</lFDI><sFDI>{sfdi}</sFDI><changedTime>{changed}</changedTime>"
        "</EndDevice>"
    )


async def register(srv: Running, cert: IssuedCert) -> str:
    """Register the certificate's own EndDevice in band; return its href."""
    client = srv.client(cert)
    reply = await client.post("/edev", end_device_xml(cert.lfdi, cert.sfdi))
    assert reply.status == 201, reply.body
    return str(reply.headers["Location"])


def random_lfdi() -> str:
    return secrets.token_hex(20).upper()


async def make_aggregator(srv: Running, name: str, lfdi: str) -> None:
    """An aggregator in the admin API, with the certificate `lfdi` granted to it."""
    assert (await srv.admin("POST", "/api/aggregators", {"name": name}))[0] == 201
    status, _ = await srv.admin("PUT", f"/api/aggregators/{name}/certificates/{lfdi}", {})
    assert status == 200


async def aggregator_fleet(srv: Running, name: str, lfdi: str, count: int) -> list[str]:
    """An aggregator (certificate `lfdi`) managing `count` EndDevices pre-registered through
    the admin bulk endpoint; their LFDIs."""
    await make_aggregator(srv, name, lfdi)
    lfdis = [random_lfdi() for _ in range(count)]
    status, _ = await srv.admin(
        "POST", "/api/end-devices", [{"lfdi": x, "aggregator": name} for x in lfdis]
    )
    assert status == 201
    return lfdis


DEVICE_INFORMATION = """<DeviceInformation xmlns="urn:ieee:std:2030.5:ns">
<lFDI>{lfdi}</lFDI><mfDate>1600000000</mfDate><mfHwVer>1.0</mfHwVer><mfID>37250</mfID>
<mfModel>Battery 9000</mfModel><mfSerNum>A-0001</mfSerNum><primaryPower>0</primaryPower>
<secondaryPower>0</secondaryPower><swActTime>1600000000</swActTime><swVer>2.3.1</swVer>
</DeviceInformation>"""
DEVICE_STATUS = """<DeviceStatus xmlns="urn:ieee:std:2030.5:ns">
<changedTime>1700000100</changedTime><onCount>3</onCount><opState>1</opState></DeviceStatus>"""
POWER_STATUS = """<PowerStatus xmlns="urn:ieee:std:2030.5:ns"><batteryStatus>1</batteryStatus>
<changedTime>1700000200</changedTime><currentPowerSource>1</currentPowerSource>
<estimatedChargeRemaining>8250</estimatedChargeRemaining></PowerStatus>"""
