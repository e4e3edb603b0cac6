"""What third-party 2030.5 clients found (issue 9, "Interoperability"), over real mutual TLS:
no XML declaration, lists posted without counts, controls leaving the lists once over, PUTs
that create answering 201, every emitted href resolving, multicast notification targets."""

from __future__ import annotations

from typing import Any

from test_der_programs import control, ok, server_now, statuses, topology
from test_subscriptions import Receiver, lab_server, receiver, subscription_xml
from test_telemetry import NS, create_mup, declared, mmr, reading, readings

from helpers import DEVICE_STATUS, register
from support import BACKENDS, Running, ServerFactory

__all__ = ["receiver"]  # the notification receiver fixture, shared with test_subscriptions
SEP = "{urn:ieee:std:2030.5:ns}"


async def test_no_xml_declaration_in_responses_or_notifications(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Item 1: UTF-8 is 2030.5's default; a widely used test client refuses a declaration."""
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    for path in ("/dcap", "/tm", "/edev", world["edev"], "/nowhere", f"{world['p1']['href']}/derc"):
        reply = await client.get(path)
        assert reply.body.startswith(b"<"), path
        assert not reply.body.startswith(b"<?xml"), (path, reply.body[:60])
    derc = f"{world['p1']['href']}/derc"
    posted = await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))
    assert posted.status == 201
    now = await server_now(srv)
    await ok(srv, "POST", f"/api/programs/{world['p1']['id']}/controls", control(now + 60))
    await receiver.wait(1)
    assert receiver.raw[0].startswith(b"<Notification "), receiver.raw[0][:60]


def counted_list(*items: str, counts: bool) -> str:
    attributes = f' all="{len(items)}" results="{len(items)}"' if counts else ""
    return f"<MirrorMeterReadingList {NS}{attributes}>{''.join(items)}</MirrorMeterReadingList>"


@BACKENDS
async def test_posted_list_without_all_and_results_is_accepted(srv: Running) -> None:
    """Item 3: sep.xsd's List says all/results are "Required on a response to a GET, ignored
    otherwise": a MirrorMeterReadingList posted without them is taken; GETs still carry them."""
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    href = await create_mup(client, device.lfdi, mmrs=declared(1, 38, 0, 128, {}))
    body = counted_list(mmr(1, reading=reading(1234)), counts=False)
    posted = await client.post(href, body)
    assert posted.status == 201, posted.body
    assert (await readings(srv, device.lfdi))["count"] == 1
    listing = await client.get("/mup")
    assert (listing.xml().get("all"), listing.xml().get("results")) == ("1", "1")
    # other schema errors in a list are still refused
    bad = counted_list(mmr(1, reading="<Reading><value>x</value></Reading>"), counts=False)
    assert (await client.post(href, bad)).status == 400


@BACKENDS
async def test_control_over_leaves_the_device_lists_and_reads_completed(srv: Running) -> None:
    """Item 5: once its end plus randomizeDuration has passed a control leaves DERControlList
    and ActiveDERControlList (until then nothing is removed); the admin API reads it as
    completed. The lists expire at that boundary: the clock moves, no write happens."""
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    pid, href = world["p1"]["id"], world["p1"]["href"]
    now = await server_now(srv)
    body: dict[str, Any] = control(now + 10, 100, opModMaxLimW=5000)
    body["controls"][0]["randomize_duration"] = 50
    (first,) = await ok(srv, "POST", f"/api/programs/{pid}/controls", body)
    (later,) = await ok(
        srv, "POST", f"/api/programs/{pid}/controls", control(now + 1000, 100, opModConnect=True)
    )
    await ok(srv, "PUT", "/api/clock", {"advance": 20})
    assert statuses(await client.get(f"{href}/derc?l=10")) == [
        (first["mrid"], "1"),
        (later["mrid"], "0"),
    ]
    # past the end but within the randomized stretch: still there, still active
    await ok(srv, "PUT", "/api/clock", {"advance": 100})
    assert (await client.get(f"{href}/actderc")).xml().get("all") == "1"
    assert len(statuses(await client.get(f"{href}/derc?l=10"))) == 2
    # over: gone from both lists and from the program's counts
    await ok(srv, "PUT", "/api/clock", {"advance": 40})
    listing = await client.get(f"{href}/derc?l=10")
    assert listing.xml().get("all") == "1"
    assert statuses(listing) == [(later["mrid"], "0")]
    assert (await client.get(f"{href}/actderc")).xml().get("all") == "0"
    program = await client.get(href)
    assert program.link("DERControlListLink")["all"] == "1"
    assert program.link("ActiveDERControlListLink")["all"] == "0"
    history = await ok(srv, "GET", f"/api/programs/{pid}/controls")
    states = {c["mrid"]: c["status"]["current"] for c in history}
    assert states == {first["mrid"]: "completed", later["mrid"]: "scheduled"}


@BACKENDS
async def test_put_that_creates_answers_201_with_location(make_server: ServerFactory) -> None:
    """Item 6: RFC 9110 §9.3.4: a PUT that creates its resource answers 201 Created (with
    Location), one that replaces it 204: DeviceStatus & co., the DER documents and (CSIP-AUS)
    the ConnectionPoint."""
    from test_der_device import DER_CAPABILITY_AUS, connection_point

    srv = await make_server(profile="csip-aus")
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    for path, body in (
        (f"{href}/dstat", DEVICE_STATUS),
        (f"{href}/der/1/dercap", DER_CAPABILITY_AUS),
        (f"{href}/cp", connection_point("2001985732")),
    ):
        first = await client.put(path, body)
        assert (first.status, first.headers.get("Location")) == (201, path), first.body
        again = await client.put(path, body)
        assert (again.status, again.headers.get("Location")) == (204, None)
        assert (await client.get(path)).status == 200
