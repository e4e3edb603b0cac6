"""The aggregator path of the DER function set (AGG-001..012; CSIP IG §5-6): one aggregator
certificate walks, subscribes and responds for many EndDevices, and sees only what reaches them.
"""

from __future__ import annotations

import secrets
import time

from test_der_programs import control, ok, server_now

from csip.pki.identity import sfdi_from_lfdi

from support import BACKENDS, Running

pytestmark = BACKENDS
SEP = "{urn:ieee:std:2030.5:ns}"


def end_device(lfdi: str) -> str:
    return (
        '<EndDevice xmlns="urn:ieee:std:2030.5:ns">'
        f"<lFDI>{lfdi}</lFDI><sFDI>{sfdi_from_lfdi(lfdi)}</sFDI><changedTime>0</changedTime>"
        "</EndDevice>"
    )


async def test_aggregator_walks_and_answers_for_its_devices(srv: Running) -> None:
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "fleet"})
    await ok(srv, "PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}", {})
    client = srv.client(agg)
    lfdis = [secrets.token_hex(20).upper() for _ in range(3)]
    hrefs = []
    for lfdi in lfdis:
        reply = await client.post("/edev", end_device(lfdi))
        assert reply.status == 201
        hrefs.append(reply.headers["Location"])
    system = await ok(srv, "POST", "/api/groups", {"description": "system", "level": "utility"})
    transformer = await ok(
        srv, "POST", "/api/groups",
        {"description": "xfmr 12", "level": "transformer", "parent": system["id"]},
    )  # fmt: skip
    await ok(srv, "POST", f"/api/groups/{system['id']}/members", {"lfdis": lfdis[:2]})
    await ok(srv, "POST", f"/api/groups/{transformer['id']}/members", {"lfdis": lfdis[:1]})
    p_system = await ok(
        srv, "POST", f"/api/groups/{system['id']}/programs", {"description": "s", "primacy": 20}
    )
    p_xfmr = await ok(
        srv, "POST", f"/api/groups/{transformer['id']}/programs", {"description": "t", "primacy": 5}
    )

    # each managed device's FSA list reflects its own groups (the third is in none)
    sizes = [(await client.get(h + "/fsa?l=10")).xml().get("all") for h in hrefs]
    assert sizes == ["2", "1", "0"]
    now = await server_now(srv)
    (sys_control,) = await ok(
        srv, "POST", f"/api/programs/{p_system['id']}/controls", control(now + 100, opModMaxLimW=50)
    )
    (xf_control,) = await ok(
        srv, "POST", f"/api/programs/{p_xfmr['id']}/controls", control(now + 50, opModMaxLimW=30)
    )
    # AGG-007: the transformer program outranks the system one for the shared device
    reply = await client.get(sys_control["href"])
    assert reply.find("s:EventStatus/s:potentiallySuperseded") == "true"

    # AGG-003: responses only for EndDevices the control reaches, each with its own lFDI
    reply_to = f"/rsps/{p_xfmr['id']}/rsp"

    def response(lfdi: str) -> str:
        return (
            '<DERControlResponse xmlns="urn:ieee:std:2030.5:ns">'
            f"<createdDateTime>{int(time.time())}</createdDateTime><endDeviceLFDI>{lfdi}</endDeviceLFDI>"
            f"<status>1</status><subject>{xf_control['mrid']}</subject></DERControlResponse>"
        )

    assert (await client.post(reply_to, response(lfdis[0]))).status == 201
    assert (await client.post(reply_to, response(lfdis[1]))).status == 400  # not targeted
    assert (await client.post(reply_to, response(srv.pki.device_a.lfdi))).status == 403
    stored = await ok(srv, "GET", f"/api/programs/{p_xfmr['id']}/responses")
    assert [r["lfdi"] for r in stored] == [lfdis[0]]

    # another aggregator sees none of it
    agg2 = srv.pki.aggregator_2
    await ok(srv, "POST", "/api/aggregators", {"name": "other"})
    await ok(srv, "PUT", f"/api/aggregators/other/certificates/{agg2.lfdi}", {})
    other = srv.client(agg2)
    for path in (
        hrefs[0] + "/fsa",
        system["href"],
        p_system["href"],
        sys_control["href"],
        reply_to,
    ):
        assert (await other.get(path)).status == 404, path
