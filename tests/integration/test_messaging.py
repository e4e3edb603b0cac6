"""The Messaging function set over real mutual TLS, on SQLite and PostgreSQL: the utility
writes a message to a group through the admin API; a device (or the aggregator managing it)
finds it through its FunctionSetAssignments, sees its status follow the clock, hears of it
through a subscription, and sees it cancelled. Nobody else finds it."""

from __future__ import annotations

import secrets
from typing import Any

from test_aggregator_der import end_device
from test_der_programs import ok, server_now
from test_subscriptions import lab_server

from helpers import register
from notify_receiver import Receiver, subscription_xml
from support import BACKENDS, Reply, Running, ServerFactory

pytestmark = BACKENDS
SEP = "{urn:ieee:std:2030.5:ns}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def messages(reply: Reply) -> list[tuple[str, str, str]]:
    """(textMessage, priority, currentStatus) of each TextMessage in a list."""
    return [
        (
            m.findtext(f"{SEP}textMessage") or "",
            m.findtext(f"{SEP}priority") or "",
            m.findtext(f"{SEP}EventStatus/{SEP}currentStatus") or "",
        )
        for m in reply.xml().findall(f"{SEP}TextMessage")
    ]


async def feeder_with(srv: Running, *lfdis: str) -> dict[str, Any]:
    feeder = await ok(srv, "POST", "/api/groups", {"description": "feeder 7-2", "level": "feeder"})
    await ok(srv, "POST", f"/api/groups/{feeder['id']}/members", {"lfdis": list(lfdis)})
    return dict(feeder)


def message(start: int, text: str = "Peak event 5-8 pm", **extra: Any) -> dict[str, Any]:
    body = {"text": text, "start": start, "duration": 600, "priority": 3, "originator": "utility"}
    return {**body, **extra}


async def test_device_reads_its_groups_messages_as_the_clock_moves(srv: Running) -> None:
    device = srv.pki.device_a
    edev = await register(srv, device)
    feeder = await feeder_with(srv, device.lfdi)
    client = srv.client(device)
    fsa = await client.get(feeder["href"])
    assert fsa.link("MessagingProgramListLink") == {"href": f"{feeder['href']}/msg", "all": "0"}
    empty = await client.get(f"{feeder['href']}/msg")
    assert (empty.status, empty.xml().get("all")) == (200, "0")

    now = await server_now(srv)
    posted = await ok(srv, "POST", f"/api/groups/{feeder['id']}/messages", message(now + 60))
    assert posted["status"]["current"] == "scheduled" and posted["priority_name"] == "critical"

    # FSA list -> FSA -> MessagingProgramList -> MessagingProgram -> TextMessageList
    fsa_list = await client.get(edev + "/fsa?l=10")
    (listed,) = fsa_list.xml().findall(f"{SEP}FunctionSetAssignments")
    link = listed.find(f"{SEP}MessagingProgramListLink")
    assert link is not None and link.get("all") == "1"
    programs = await client.get(f"{link.get('href')}?l=10")
    assert programs.xml().get("subscribable") == "1"
    (program,) = programs.xml().findall(f"{SEP}MessagingProgram")
    assert program.findtext(f"{SEP}locale") == "en-US"
    mp = await client.get(program.get("href") or "")
    txt = mp.link("TextMessageListLink")
    assert txt == {"href": posted["href"].rsplit("/", 1)[0], "all": "1"}
    assert mp.link("ActiveTextMessageListLink")["all"] == "0"
    listing = await client.get(txt["href"] + "?l=10")
    assert messages(listing) == [("Peak event 5-8 pm", "3", "0")]
    one = await client.get(posted["href"])
    assert one.find("s:originator") == "utility" and one.find("s:mRID") == posted["mrid"]
    assert one.xml().get("responseRequired") is None  # csip takes no answers to messages

    # the clock reaches the start: active and in /acttxt, with no write in between
    await ok(srv, "PUT", "/api/clock", {"advance": 61})
    assert messages(await client.get(txt["href"] + "?l=10")) == [("Peak event 5-8 pm", "3", "1")]
    active = await client.get(f"{program.get('href')}/acttxt?l=10")
    assert active.xml().get("all") == "1"

    # cancelled by the utility: still listed, Cancelled
    cancelled = await ok(srv, "POST", f"/api/groups/{feeder['id']}/messages/{posted['id']}/cancel")
    assert cancelled["status"]["current"] == "cancelled"
    assert messages(await client.get(txt["href"] + "?l=10")) == [("Peak event 5-8 pm", "3", "2")]
    assert (await client.get(f"{program.get('href')}/acttxt")).xml().get("all") == "0"
    history = await ok(srv, "GET", f"/api/groups/{feeder['id']}/messages")
    assert [m["id"] for m in history["items"]] == [posted["id"]]

    # a device outside the group finds none of it
    other = srv.client(srv.pki.device_b)
    await register(srv, srv.pki.device_b)
    for href in (f"{feeder['href']}/msg", program.get("href") or "", txt["href"], posted["href"]):
        assert (await other.get(href)).status == 404, href


async def test_bad_messages_are_refused_and_store_nothing(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    feeder = await feeder_with(srv, device.lfdi)
    now = await server_now(srv)
    path = f"/api/groups/{feeder['id']}/messages"
    for bad, says in (
        (message(now, priority=4), "priority"),
        (message(now, duration=0), "duration"),
        (message(now, text=""), "text"),
        (message(now, text="bell \x07"), "control characters"),
        (message(now, originator="x" * 21), "originator"),
        ({"text": "no start"}, "start"),
        (message(now, colour="red"), "colour"),
    ):
        status, body = await srv.admin("POST", path, bad)
        assert status == 400 and says in body["detail"], (bad, body)
    status, _ = await srv.admin("POST", "/api/groups/99999/messages", message(now))
    assert status == 404
    assert await ok(srv, "GET", path) == {"program": None, "items": []}
    settings = f"/api/groups/{feeder['id']}/messaging-program"
    status, body = await srv.admin("PUT", settings, {"primacy": 256})
    assert status == 400 and "primacy" in body["detail"]
    assert await ok(srv, "GET", path) == {"program": None, "items": []}
    made = await ok(srv, "PUT", settings, {"locale": "fr-CA", "primacy": 3})
    assert (made["locale"], made["primacy"], made["href"]) == ("fr-CA", 3, f"/msg/{made['id']}")
    shown = await srv.client(device).get(f"{feeder['href']}/msg")
    assert shown.find("s:MessagingProgram/s:locale") == "fr-CA"
    fsa = await srv.client(device).get(feeder["href"])
    assert fsa.link("MessagingProgramListLink")["all"] == "1"  # made through the PUT


async def test_aggregator_reads_the_messages_of_its_devices_groups(srv: Running) -> None:
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "fleet"})
    await ok(srv, "PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}", {})
    client = srv.client(agg)
    lfdi = secrets.token_hex(20).upper()
    created = await client.post("/edev", end_device(lfdi))
    assert created.status == 201
    feeder = await feeder_with(srv, lfdi)
    lonely = await ok(srv, "POST", "/api/groups", {"description": "nobody's"})
    now = await server_now(srv)
    posted = await ok(srv, "POST", f"/api/groups/{feeder['id']}/messages", message(now, "hello"))
    await ok(srv, "POST", f"/api/groups/{lonely['id']}/messages", message(now, "not yours"))

    (fsa,) = (await client.get(created.headers["Location"] + "/fsa?l=5")).xml()
    link = fsa.find(f"{SEP}MessagingProgramListLink")
    assert link is not None
    (program,) = (await client.get(f"{link.get('href')}?l=5")).xml()
    listing = await client.get(f"{program.get('href')}/txt?l=5")
    assert messages(listing) == [("hello", "3", "1")]
    assert (await client.get(posted["href"])).status == 200
    assert (await client.get(f"{lonely['href']}/msg")).status == 404


async def test_subscribers_hear_of_messages_written_and_cancelled(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    edev = await register(srv, device)
    feeder = await feeder_with(srv, device.lfdi)
    client = srv.client(device)
    now = await server_now(srv)
    path = f"/api/groups/{feeder['id']}/messages"
    first = await ok(srv, "POST", path, message(now + 60, "first"))
    txt = first["href"].rsplit("/", 1)[0]
    for resource in (txt, f"{feeder['href']}/msg"):
        posted = await client.post(edev + "/sub", subscription_xml(resource, receiver.uri))
        assert posted.status == 201, posted.body

    second = await ok(srv, "POST", path, message(now + 30, "second"))
    got = await receiver.wait(2)
    kinds = {}
    for notification in got:
        assert srv.validator.validate(notification), srv.validator.error_log
        resource = notification.find(f"{SEP}Resource")
        assert resource is not None
        kinds[resource.get(XSI_TYPE)] = resource
    text_list = kinds["TextMessageList"]
    assert text_list.get("all") == "2"
    assert [m.findtext(f"{SEP}textMessage") for m in text_list] == ["second", "first"]
    program_list = kinds["MessagingProgramList"]
    (program,) = program_list
    assert program.find(f"{SEP}TextMessageListLink").get("all") == "2"  # type: ignore[union-attr]

    await ok(srv, "POST", f"{path}/{second['id']}/cancel")
    got = await receiver.wait(4)
    cancelled = [n.find(f"{SEP}Resource") for n in got[2:] if n.find(f"{SEP}Resource") is not None]
    text_lists = [r for r in cancelled if r is not None and r.get(XSI_TYPE) == "TextMessageList"]
    (after,) = text_lists
    status = after.findtext(f"{SEP}TextMessage/{SEP}EventStatus/{SEP}currentStatus")
    assert status == "2"  # the first listed (earliest start) is the cancelled one
