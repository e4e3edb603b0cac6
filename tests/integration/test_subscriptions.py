"""2030.5 subscriptions and notifications (CORE-018, CORE-019, AGG-001; CSIP IG §6.5): a real
receiver with its own TLS server that demands a client certificate, so every notification
arrives over mutual TLS signed by csip's certificate."""

from __future__ import annotations

import ssl

from test_der_programs import control, ok, server_now, topology

from helpers import register
from notify_receiver import Receiver, subscription_xml
from support import BACKENDS, Running, ServerFactory

pytestmark = BACKENDS
SEP = "{urn:ieee:std:2030.5:ns}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


async def lab_server(make_server: ServerFactory) -> Running:
    return await make_server(notification_allow_private=True, outbox_retry_delays=[0.2])


async def test_control_change_notifies_the_subscriber(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    derc = f"{world['p1']['href']}/derc"
    posted = await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))
    assert posted.status == 201
    href = posted.headers["Location"]
    assert (await client.get(href)).find("s:notificationURI") == receiver.uri
    assert (await client.get(world["edev"] + "/sub")).xml().get("all") == "1"
    assert (await client.get(derc)).xml().get("subscribable") == "1"

    now = await server_now(srv)
    (created,) = await ok(
        srv,
        "POST",
        f"/api/programs/{world['p1']['id']}/controls",
        control(now + 60, opModMaxLimW=1),
    )
    (notification,) = await receiver.wait(1)
    assert srv.validator.validate(notification), srv.validator.error_log
    assert notification.findtext(f"{SEP}subscribedResource") == derc
    assert notification.findtext(f"{SEP}status") == "0"
    uri = notification.findtext(f"{SEP}subscriptionURI") or ""
    assert uri.startswith("https://localhost:") and uri.endswith(href)
    resource = notification.find(f"{SEP}Resource")
    assert resource is not None and resource.get(XSI_TYPE) == "DERControlList"
    assert [c.findtext(f"{SEP}mRID") for c in resource] == [created["mrid"]]
    server_pem = (srv.pki.directory / "server.pem").read_bytes()
    assert receiver.peers[-1] == ssl.PEM_cert_to_DER_cert(server_pem.decode())

    # cancelling is a change too
    await ok(srv, "POST", f"/api/controls/{created['id']}/cancel", {})
    second = (await receiver.wait(2))[1]
    status = second.find(f"{SEP}Resource/{SEP}DERControl/{SEP}EventStatus/{SEP}currentStatus")
    assert status is not None and status.text == "2"


async def test_undelivered_notifications_are_retried(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    world = await topology(srv, device)
    dderc = f"{world['p1']['href']}/dderc"
    await ok(
        srv,
        "PUT",
        f"/api/programs/{world['p1']['id']}/default-control",
        {"base": {"opModConnect": True}},
    )
    reply = await srv.client(device).post(
        world["edev"] + "/sub", subscription_xml(dderc, receiver.uri)
    )
    assert reply.status == 201
    receiver.fail_next = 2
    await ok(
        srv,
        "PUT",
        f"/api/programs/{world['p1']['id']}/default-control",
        {"base": {"opModConnect": False}},
    )
    (notification,) = await receiver.wait(1)
    assert len(receiver.peers) >= 3  # two refusals, then delivered
    connect = notification.find(f"{SEP}Resource/{SEP}DERControlBase/{SEP}opModConnect")
    assert connect is not None and connect.text == "false"


async def test_deleting_the_device_ends_its_subscriptions(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    href = await register(srv, device)
    reply = await srv.client(device).post(href + "/sub", subscription_xml(href, receiver.uri))
    assert reply.status == 201
    assert (await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}"))[0] == 204
    (farewell,) = await receiver.wait(1)
    assert farewell.findtext(f"{SEP}status") == "4"
    assert farewell.find(f"{SEP}Resource") is None
    assert srv.validator.validate(farewell)


async def test_membership_change_notifies_fsa_list_subscribers(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    href = await register(srv, device)
    reply = await srv.client(device).post(
        href + "/sub", subscription_xml(href + "/fsa", receiver.uri)
    )
    assert reply.status == 201
    group = await ok(srv, "POST", "/api/groups", {"description": "feeder 9"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{device.lfdi}")
    (notification,) = await receiver.wait(1)
    resource = notification.find(f"{SEP}Resource")
    assert resource is not None and resource.get(XSI_TYPE) == "FunctionSetAssignmentsList"
    assert resource.get("all") == "1"


async def test_bad_subscriptions_are_refused(srv: Running, receiver: Receiver) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    other = await register(srv, srv.pki.device_b)
    client = srv.client(device)
    cases = [
        (subscription_xml(href, receiver.uri), 400, "1"),  # loopback not allowed by default
        (subscription_xml(href, "http://example.com/n"), 400, "1"),
        (subscription_xml(href, "https://10.1.2.3/n"), 400, "1"),
        (subscription_xml("/tm", "https://example.com/n"), 400, "1"),
        (subscription_xml(other, "https://example.com/n"), 403, "0"),
        (subscription_xml(href, "https://example.com/n", limit=0), 400, "1"),
        (
            subscription_xml(
                href,
                "https://example.com/n",
                extra="<Condition><attributeIdentifier>0</attributeIdentifier>"
                "<lowerThreshold>0</lowerThreshold><upperThreshold>1</upperThreshold></Condition>",
            ),
            400,
            "3",
        ),
    ]
    for body, status, reason in cases:
        reply = await client.post(href + "/sub", body)
        assert (reply.status, reply.find("s:reasonCode")) == (status, reason), body
    assert (await client.get(href + "/sub")).xml().get("all") == "0"
    good = await client.post(href + "/sub", subscription_xml(href, "https://example.com/n"))
    assert good.status == 201
    assert (await srv.client(srv.pki.device_b).get(good.headers["Location"])).status == 404
    assert (await client.delete(good.headers["Location"])).status == 204
    assert (await client.get(href + "/sub")).xml().get("all") == "0"


async def _count(srv: Running, table: str) -> int:
    from sqlalchemy import text

    assert srv.server.store is not None
    async with srv.server.store.engine.connect() as connection:
        query = text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        return int((await connection.execute(query)).scalar_one())


async def test_an_invalid_targeted_control_leaves_nothing_behind(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Issue 8 defect 2: POST /api/controls finds or makes the device's own group, membership
    and program, then publishes; an invalid control (400) must leave none of it committed,
    nor the FunctionSetAssignmentsList notification the membership would have queued."""
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    href = await register(srv, device)
    reply = await srv.client(device).post(
        href + "/sub", subscription_xml(href + "/fsa", receiver.uri)
    )
    assert reply.status == 201
    before = {t: await _count(srv, t) for t in ("der_group", "der_program", "outbox")}
    bad = {
        "lfdi": device.lfdi,
        "primacy": 2,
        "start": 2_000_000_000,
        "duration": 60,
        "base": {"opModFixedW": 99_999},  # not an Int16: invalid 2030.5
    }
    status, body = await srv.admin("POST", "/api/controls", bad)
    assert status == 400, body
    after = {t: await _count(srv, t) for t in ("der_group", "der_program", "outbox")}
    assert after == before == {"der_group": 0, "der_program": 0, "outbox": 0}
    assert await ok(srv, "GET", "/api/groups") == []
    fsa = await srv.client(device).get(href + "/fsa")
    assert fsa.xml().get("all") == "0"
    good = {**bad, "base": {"opModFixedW": 5000}}
    created = await ok(srv, "POST", "/api/controls", good)
    assert created["program"]
    assert await receiver.wait(1)  # the good one queued the FSA list notification
