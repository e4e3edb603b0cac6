"""Time-driven notifications (issue 10 item 7): a DERControlList subscriber hears when a
control becomes active and when it ends as the server clock moves, with no write in between;
once, however many workers share the database. Over real sockets: the subscriber's receiver is
an HTTPS server demanding csip's client certificate (tests/notify_receiver.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from lxml import etree
from test_der_programs import control, ok, server_now, topology

from csip.app import App
from csip.store import outbox as store_outbox

from notify_receiver import Receiver, subscription_xml
from support import BACKENDS, Running, ServerFactory

SEP = "{urn:ieee:std:2030.5:ns}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def app_of(srv: Running) -> App:
    assert srv.server.app is not None
    return srv.server.app


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - waiting on another task's progress
            await asyncio.sleep(0.02)


async def settled(*servers: Running, moment: int) -> None:
    """Every worker's boundary task has passed `moment` and the outbox holds nothing
    undelivered: no further notification can be on its way."""

    async def done() -> bool:
        if any(app_of(s).boundaries.horizon < moment for s in servers):
            return False
        return (await store_outbox.counts(app_of(servers[0]).store)).pending == 0

    await until(done)


def listed(notification: etree._Element) -> list[tuple[str, str]]:
    resource = notification.find(f"{SEP}Resource")
    assert resource is not None and resource.get(XSI_TYPE) == "DERControlList"
    return [
        (c.findtext(f"{SEP}mRID") or "", c.findtext(f"{SEP}EventStatus/{SEP}currentStatus") or "")
        for c in resource.findall(f"{SEP}DERControl")
    ]


@BACKENDS
async def test_subscriber_hears_a_control_start_and_end_as_the_clock_moves(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await make_server(notification_allow_private=True, outbox_retry_delays=[0.2])
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    derc = f"{world['p1']['href']}/derc"
    assert (await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))).status
    now = await server_now(srv)
    (created,) = await ok(
        srv, "POST", f"/api/programs/{world['p1']['id']}/controls", control(now + 60, 600)
    )
    mrid = created["mrid"]
    (published,) = await receiver.wait(1)  # the write itself
    assert listed(published) == [(mrid, "0")]

    # the lab moves the clock past the start: told it is active, with no write in between
    await ok(srv, "PUT", "/api/clock", {"advance": 61})
    started = (await receiver.wait(2))[1]
    assert srv.validator.validate(started), srv.validator.error_log
    assert listed(started) == [(mrid, "1")]

    # the clock moved in-process (a test, the harness) past the end: it leaves the list
    srv.server.clock.advance(600)
    ended = (await receiver.wait(3))[2]
    assert srv.validator.validate(ended), srv.validator.error_log
    assert listed(ended) == []

    # once each: nothing more is on its way
    await settled(srv, moment=now + 661)
    assert len(receiver.received) == 3


@BACKENDS
async def test_with_the_clock_left_alone_the_start_is_told_when_it_comes(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await make_server(notification_allow_private=True, outbox_retry_delays=[0.2])
    device = srv.pki.device_a
    world = await topology(srv, device)
    derc = f"{world['p1']['href']}/derc"
    client = srv.client(device)
    assert (await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))).status
    now = await server_now(srv)
    (created,) = await ok(
        srv, "POST", f"/api/programs/{world['p1']['id']}/controls", control(now + 2, 600)
    )
    await receiver.wait(1)
    # nothing moves the clock and nothing is written: the task wakes at the start by itself
    started = (await receiver.wait(2))[1]
    assert listed(started) == [(created["mrid"], "1")]


@BACKENDS
async def test_a_randomized_control_is_told_ended_at_its_latest_end(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await make_server(notification_allow_private=True, outbox_retry_delays=[0.2])
    device = srv.pki.device_a
    world = await topology(srv, device)
    derc = f"{world['p1']['href']}/derc"
    client = srv.client(device)
    assert (await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))).status
    now = await server_now(srv)
    spec = control(now + 60, 600)
    spec["controls"][0]["randomize_duration"] = 120
    (created,) = await ok(srv, "POST", f"/api/programs/{world['p1']['id']}/controls", spec)
    await receiver.wait(1)
    # past the nominal end a device may still run it: nothing changed, nothing told
    srv.server.clock.advance(661)
    started = (await receiver.wait(2))[1]
    assert listed(started) == [(created["mrid"], "1")]
    await settled(srv, moment=now + 661)
    assert len(receiver.received) == 2
    srv.server.clock.advance(120)
    assert listed((await receiver.wait(3))[2]) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_several_workers_tell_each_boundary_once(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    lab = {"notification_allow_private": True, "outbox_retry_delays": [0.2]}
    one = await make_server(**lab)
    two = await make_server(**lab)
    three = await make_server(**lab)
    workers = (one, two, three)
    device = one.pki.device_a
    world = await topology(one, device)
    derc = f"{world['p1']['href']}/derc"
    reply = await one.client(device).post(
        world["edev"] + "/sub", subscription_xml(derc, receiver.uri)
    )
    assert reply.status == 201
    now = await server_now(one)
    (created,) = await ok(
        one, "POST", f"/api/programs/{world['p1']['id']}/controls", control(now + 60, 600)
    )
    await receiver.wait(1)

    def move_every_clock(seconds: float) -> None:  # each worker process owns its clock
        offset = one.server.clock.offset + seconds
        for srv in workers:
            srv.server.clock.offset = offset

    move_every_clock(61)
    started = (await receiver.wait(2))[1]
    assert listed(started) == [(created["mrid"], "1")]
    await settled(*workers, moment=now + 61)
    assert len(receiver.received) == 2
    # every worker passed the moment and tried; the database let one tell it
    assert all((world["p1"]["id"], now + 60) in app_of(s).boundaries.told for s in workers)
    assert sum(app_of(s).boundaries.claimed for s in workers) == 1

    move_every_clock(600)
    assert listed((await receiver.wait(3))[2]) == []
    await settled(*workers, moment=now + 661)
    assert len(receiver.received) == 3
    assert sum(app_of(s).boundaries.claimed for s in workers) == 2
