"""2030.5 documents and steps that several test modules use."""

from __future__ import annotations

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
