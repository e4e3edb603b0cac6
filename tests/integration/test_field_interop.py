"""What third-party 2030.5 clients found (issue 9, "Interoperability"), over real mutual TLS:
no XML declaration, lists posted without counts, controls leaving the lists once over, PUTs
that create answering 201, every emitted href resolving, multicast notification targets."""

from __future__ import annotations

from typing import Any

from test_der_programs import control, ok, server_now, statuses, topology
from test_subscriptions import lab_server
from test_telemetry import NS, create_mup, declared, mmr, reading, readings

from helpers import DEVICE_STATUS, register
from notify_receiver import Receiver, subscription_xml
from support import BACKENDS, Running, ServerFactory

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


# ---- item 7: every href csip emits resolves for whoever may read it ----------------------
async def furnish(
    srv: Running, client: Any, edev: str, lfdi: str, p1: dict[str, Any], n: int
) -> None:
    """Everything a device can put under its EndDevice, plus a control with a curve, a
    DefaultDERControl, a subscription, a mirror with a reading and a posted response."""
    from test_der_device import DOCUMENTS, log_event

    from helpers import DEVICE_INFORMATION, POWER_STATUS

    for part, body in (
        ("di", DEVICE_INFORMATION.format(lfdi=lfdi)),
        ("dstat", DEVICE_STATUS),
        ("ps", POWER_STATUS),
    ):
        assert (await client.put(f"{edev}/{part}", body)).status in (201, 204)
    for part, body in DOCUMENTS.items():
        assert (await client.put(f"{edev}/der/1/{part}", body)).status in (201, 204)
    assert (await client.post(f"{edev}/lel", log_event(1700000000, 1))).status == 201
    sub = subscription_xml(f"{edev}/fsa", "https://127.0.0.1:9/notify")
    assert (await client.post(f"{edev}/sub", sub)).status == 201
    mup = f"<MirrorUsagePoint {NS}>" + (
        f"<mRID>{lfdi[:24]}0000A4F1</mRID><description>site</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI>{declared(n, 38, 0, 128, {})}</MirrorUsagePoint>"
    )
    posted = await client.post("/mup", mup)
    assert posted.status == 201, posted.body
    assert (
        await client.post(posted.headers["Location"], mmr(n, reading=reading(7), ns=NS))
    ).status == 201
    now = await server_now(srv)
    (ctl,) = await ok(
        srv, "POST", f"/api/programs/{p1['id']}/controls", control(now + 60, opModMaxLimW=9)
    )
    answer = (
        '<DERControlResponse xmlns="urn:ieee:std:2030.5:ns">'
        f"<createdDateTime>{now}</createdDateTime><endDeviceLFDI>{lfdi}</endDeviceLFDI>"
        f"<status>1</status><subject>{ctl['mrid']}</subject></DERControlResponse>"
    )
    replied = await client.post(f"/rsps/{p1['id']}/rsp", answer)
    assert replied.status == 201, replied.body
    assert (await client.get(replied.headers["Location"])).status == 200


async def walk(client: Any) -> dict[str, int]:
    """GET every href (and replyTo) reachable from /dcap; lists are read whole."""
    seen: dict[str, int] = {}
    queue = ["/dcap"]
    while queue:
        href = queue.pop(0)
        if href in seen:
            continue
        reply = await client.get(href)
        seen[href] = reply.status
        if reply.status != 200:
            continue
        root = reply.xml()
        if root.get("all") is not None and root.get("all") != root.get("results"):
            root = (await client.get(f"{href}?l=255")).xml()
        for element in root.iter():
            for name in ("href", "replyTo"):
                value = element.get(name)
                if value and value not in seen:
                    queue.append(value)
    return seen


@BACKENDS
async def test_every_emitted_href_resolves_for_a_device_and_an_aggregator(
    make_server: ServerFactory,
) -> None:
    """Item 7: a device and an aggregator walk every href (and replyTo) from /dcap, lists read
    whole, and every one answers 200 (the ResponseSetList is schema-valid, a ResponseSet, a
    posted Response's Location). Documented exception: the documents a client itself PUTs
    (DeviceInformation, DeviceStatus, PowerStatus, the DER documents, ConnectionPoint) answer
    404 until it has; the walk has them PUT first. Notification URIs are the client's own."""
    srv = await make_server(notification_allow_private=True, outbox_retry_delays=[3600.0])
    device, agg = srv.pki.device_a, srv.pki.aggregator
    world = await topology(srv, device)
    await ok(
        srv,
        "PUT",
        f"/api/programs/{world['p1']['id']}/default-control",
        {"base": {"opModConnect": True}},
    )
    await ok(
        srv, "POST", f"/api/programs/{world['p1']['id']}/curves",
        {"curve_type": 11, "points": [[92, 30], [108, -30]],
         "x_multiplier": 0, "y_multiplier": 0, "y_ref_type": 3},
    )  # fmt: skip
    device_client = srv.client(device)
    await furnish(srv, device_client, world["edev"], device.lfdi, world["p1"], 1)

    await ok(srv, "POST", "/api/aggregators", {"name": "fleet"})
    await ok(srv, "PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}", {})
    agg_client = srv.client(agg)
    managed_lfdi = "AB" * 20
    from test_aggregator_der import end_device

    managed = await agg_client.post("/edev", end_device(managed_lfdi))
    assert managed.status == 201
    await ok(srv, "PUT", f"/api/groups/{world['feeder']['id']}/members/{managed_lfdi}")
    await furnish(srv, agg_client, managed.headers["Location"], managed_lfdi, world["p1"], 2)

    for client in (device_client, agg_client):
        seen = await walk(client)
        broken = {href: status for href, status in seen.items() if status != 200}
        assert not broken, broken
        assert len(seen) > 40, sorted(seen)
        assert any(h.startswith("/rsps/") and "/rsp/" in h for h in seen)


# ---- item 19: non-unicast notification targets are refused when subscribing ---------------
@BACKENDS
async def test_multicast_and_other_non_unicast_targets_are_refused(
    make_server: ServerFactory,
) -> None:
    """Item 19: delivery drops these, so accepting them loses every notification. Refused
    (400, nothing stored) even with notification_allow_private (labs): literals, and names
    whose resolution reaches one."""
    import socket

    srv = await make_server(notification_allow_private=True)
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    table = {"group.lab.test": "239.1.2.3", "all.lab.test": "ff02::1", "ok.lab.test": "10.0.0.7"}

    async def resolve(host: str, port: int) -> list[Any]:
        if host not in table:
            raise socket.gaierror("unknown")
        family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]

    assert srv.server.notifier is not None
    srv.server.notifier.subscriptions.resolve = resolve
    for target in (
        "224.0.0.251",
        "[ff02::1]",
        "255.255.255.255",
        "0.0.0.0",  # noqa: S104 (a target refused, not a bind)
        "[::]",
        "240.0.0.1",
        "[::ffff:224.0.0.1]",
        "group.lab.test",
        "all.lab.test",
    ):
        reply = await client.post(href + "/sub", subscription_xml(href, f"https://{target}/n"))
        assert reply.status == 400, (target, reply.status)
    assert (await client.get(href + "/sub")).xml().get("all") == "0"
    for target in ("10.0.0.7", "ok.lab.test", "unknown.lab.test"):  # unresolved: retried later
        reply = await client.post(href + "/sub", subscription_xml(href, f"https://{target}/n"))
        assert reply.status == 201, (target, reply.body)


# ---- item 9: the metering read side --------------------------------------------------------
@BACKENDS
async def test_metering_client_walks_upt_to_readings(srv: Running) -> None:
    """Item 9 (IEEE 2030.5 §10.6 Metering; CSIP IG §5 metering mirror): what a device mirrors
    is readable as UsagePoint / MeterReading / ReadingType / ReadingSet / Reading under /upt,
    linked from /dcap, with the mirror's access rules, schema-valid (the client checks every
    body) and rendered once (a repeated poll does no query; new readings show on the next)."""
    from test_hot_path import QueryCounter

    from support import settle_bus

    device, other = srv.pki.device_a, srv.pki.device_b
    await register(srv, device)
    await register(srv, other)
    client = srv.client(device)
    mup = await create_mup(
        client, device.lfdi, mmrs=declared(1, 38, 0, 128, {}) + declared(2, 29, -1, 129, {})
    )
    posted = await client.post(
        mup,
        counted_list(
            mmr(1, reading=reading(4321, start=1_700_000_000, quality="01")),
            mmr(2, reading=reading(2305, start=1_700_000_000)),
            counts=True,
        ),
    )
    assert posted.status == 201
    assert (
        await client.post(mup, mmr(1, reading=reading(4400, 1_700_000_060), ns=NS))
    ).status == 201

    dcap = await client.get("/dcap")
    assert dcap.link("UsagePointListLink") == {"href": "/upt", "all": "1"}
    upts = await client.get("/upt?l=10")
    (upt,) = upts.xml().findall(f"{SEP}UsagePoint")
    assert upt.findtext(f"{SEP}deviceLFDI") == device.lfdi
    mr_list = upt.find(f"{SEP}MeterReadingListLink")
    assert mr_list is not None and mr_list.get("all") == "2"
    meters = (await client.get(f"{mr_list.get('href')}?l=10")).xml().findall(f"{SEP}MeterReading")
    watts = meters[0]
    assert watts.findtext(f"{SEP}mRID") == mmr(1).split("<mRID>")[1].split("<")[0]
    rt_link = watts.find(f"{SEP}ReadingTypeLink")
    assert rt_link is not None
    rt = await client.get(rt_link.get("href") or "")
    assert (rt.find("s:uom"), rt.find("s:phase")) == ("38", "128")
    rs_link = watts.find(f"{SEP}ReadingSetListLink")
    assert rs_link is not None and rs_link.get("all") == "1"
    (reading_set,) = (await client.get(rs_link.get("href") or "")).xml()
    assert reading_set.findtext(f"{SEP}timePeriod/{SEP}start") == "1700000000"
    assert reading_set.findtext(f"{SEP}timePeriod/{SEP}duration") == "120"
    r_link = reading_set.find(f"{SEP}ReadingListLink")
    assert r_link is not None and r_link.get("all") == "2"
    r_href = f"{r_link.get('href')}?l=10"
    values = [r.findtext(f"{SEP}value") for r in (await client.get(r_href)).xml()]
    assert values == ["4400", "4321"]  # newest first
    latest = watts.find(f"{SEP}ReadingLink")
    assert latest is not None
    one = await client.get(latest.get("href") or "")
    assert (one.find("s:value"), one.find("s:timePeriod/s:start")) == ("4400", "1700000060")

    # the same access rules as the mirror
    intruder = srv.client(other)
    for path in ("/upt/1", f"{mr_list.get('href')}", rt_link.get("href"), latest.get("href")):
        assert (await intruder.get(path or "")).status == 404, path
    assert (await intruder.get("/upt")).xml().get("all") == "0"

    # render once: a repeated poll costs no query; a new reading shows on the next poll
    await settle_bus(srv)
    await client.get(r_href)
    await client.get("/upt")
    with QueryCounter(srv) as queries:
        await client.get(r_href)
        await client.get("/upt")
    assert queries.count == 0
    assert (
        await client.post(mup, mmr(1, reading=reading(4500, 1_700_000_120), ns=NS))
    ).status == 201
    values = [r.findtext(f"{SEP}value") for r in (await client.get(r_href)).xml()]
    assert values == ["4500", "4400", "4321"]


# ---- item 4: a reading's mRID is global ----------------------------------------------------
@BACKENDS
async def test_reading_mrid_is_global_and_a_new_reading_type_replaces(srv: Running) -> None:
    """Item 4: a MirrorMeterReading whose mRID another device's mirror already uses is 409
    Conflict (well formed, but in conflict with another resource; nothing stored). Re-POSTing
    the MirrorUsagePoint with the same reading mRID and a new ReadingType replaces it (IEEE
    2030.5 §10.11.3 a) 4): the new data is written over the existing), old readings dropped."""
    from test_telemetry import mup_xml, reading_type

    a, b = srv.pki.device_a, srv.pki.device_b
    await register(srv, a)
    await register(srv, b)
    client_a, client_b = srv.client(a), srv.client(b)
    href = await create_mup(client_a, a.lfdi, mmrs=declared(1, 38, 0, 128, {}))
    assert (await client_a.post(href, mmr(1, reading=reading(5), ns=NS))).status == 201

    taken = await client_b.post("/mup", mup_xml(b.lfdi, 7, mmrs=declared(1, 38, 0, 128, {})))
    assert taken.status == 409, taken.body
    assert (await client_b.get("/mup")).xml().get("all") == "0"  # nothing stored
    own = await create_mup(client_b, b.lfdi, 7, mmrs=declared(2, 38, 0, 128, {}))
    assert (await client_b.post(own, mmr(1, reading_type(38, 0), ns=NS))).status == 409

    again = await client_a.post("/mup", mup_xml(a.lfdi, mmrs=mmr(1, reading_type(29, -1))))
    assert (again.status, again.headers["Location"]) == (204, href)
    mirrored = await client_a.get(href)
    assert mirrored.find("s:MirrorMeterReading/s:ReadingType/s:uom") == "29"
    assert (await readings(srv, a.lfdi))["count"] == 0
    assert (await client_a.post(href, mmr(1, reading=reading(2301), ns=NS))).status == 201
    assert (await readings(srv, a.lfdi))["count"] == 1


# ---- item 11: deleting a group or a program; GET of a program and its default -----------
@BACKENDS
async def test_admin_deletes_a_program_and_a_group(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Item 11: a deleted program's scheduled and active controls are cancelled (never deleted
    on the wire), it leaves every device-facing list, its own hrefs still answer (controls
    Cancelled) and the admin API keeps its history. A group without sub-groups can be
    deleted likewise: it leaves its members' FSA lists. GET of a program and its default."""
    srv = await lab_server(make_server)
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    p1, p2 = world["p1"], world["p2"]
    derc = f"{p1['href']}/derc"
    assert (
        await client.post(world["edev"] + "/sub", subscription_xml(derc, receiver.uri))
    ).status == 201

    assert await ok(srv, "GET", f"/api/programs/{p1['id']}") == {
        **p1, "deleted_at": None, "controls": 0, "default_control": False,
    }  # fmt: skip
    assert (await srv.admin("GET", f"/api/programs/{p1['id']}/default-control"))[0] == 404
    await ok(
        srv, "PUT", f"/api/programs/{p1['id']}/default-control", {"base": {"opModConnect": True}}
    )
    default = await ok(srv, "GET", f"/api/programs/{p1['id']}/default-control")
    assert default["base"] == {"opModConnect": True}

    now = await server_now(srv)
    (c1,) = await ok(srv, "POST", f"/api/programs/{p1['id']}/controls", control(now + 60))
    (c2,) = await ok(srv, "POST", f"/api/programs/{p2['id']}/controls", control(now + 60))
    await receiver.wait(1)
    deleted = await ok(srv, "DELETE", f"/api/programs/{p1['id']}")
    assert deleted == {"cancelled": [c1["mrid"]]}
    # out of the device's lists ...
    associated = await client.get(world["edev"] + "/der/1/derp?l=5")
    assert [p.get("href") for p in associated.xml()] == [p2["href"]]
    assert (await client.get(f"{world['utility']['href']}/derp")).xml().get("all") == "0"
    rsps = await client.get("/rsps?l=10")
    assert [r.get("href") for r in rsps.xml()] == [f"/rsps/{p2['id']}"]
    # ... but a device holding its hrefs learns the control was cancelled, and so does the
    # DERControlList subscriber
    assert statuses(await client.get(f"{derc}?l=5")) == [(c1["mrid"], "2")]
    (_, notified) = await receiver.wait(2)
    assert (
        notified.findtext(f"{SEP}Resource/{SEP}DERControl/{SEP}EventStatus/{SEP}currentStatus")
        == "2"
    )
    # the admin API keeps the history; a deleted program takes no new controls
    program = await ok(srv, "GET", f"/api/programs/{p1['id']}")
    assert program["deleted_at"] is not None and program["controls"] == 1
    history = await ok(srv, "GET", f"/api/programs/{p1['id']}/controls")
    assert [c["status"]["current"] for c in history] == ["cancelled"]
    assert [
        p["id"] for p in await ok(srv, "GET", f"/api/groups/{world['utility']['id']}/programs")
    ] == []
    status, _ = await srv.admin("POST", f"/api/programs/{p1['id']}/controls", control(now + 99))
    assert status == 404
    assert (await srv.admin("DELETE", f"/api/programs/{p1['id']}"))[0] == 404

    # a group with sub-groups is refused; a leaf goes, with its program's controls cancelled
    assert (await srv.admin("DELETE", f"/api/groups/{world['substation']['id']}"))[0] == 409
    gone = await ok(srv, "DELETE", f"/api/groups/{world['feeder']['id']}")
    assert gone == {"cancelled": [c2["mrid"]]}
    # the device was on that feeder only: the ancestors reached it through it
    assert (await client.get(world["edev"] + "/fsa?l=10")).xml().get("all") == "0"
    assert (await client.get(world["feeder"]["href"])).status == 404
    groups = [g["id"] for g in await ok(srv, "GET", "/api/groups")]
    assert world["feeder"]["id"] not in groups
    history = await ok(srv, "GET", f"/api/programs/{p2['id']}/controls")
    assert [c["status"]["current"] for c in history] == ["cancelled"]
    assert (await srv.admin("DELETE", f"/api/groups/{world['substation']['id']}"))[0] == 200


# ---- item 10: a notification host allow-list per aggregator -------------------------------
@BACKENDS
async def test_per_aggregator_notification_host_allow_list(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Item 10: with the global switches off (https, public targets only), an aggregator whose
    allow-list names the lab's receiver host subscribes to it and is notified there, over
    mutual TLS; it may then subscribe nowhere else. Other clients keep the global rules; an
    empty list restores them."""
    from test_aggregator_der import end_device

    srv = await make_server(outbox_retry_delays=[0.2])
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "fleet"})
    await ok(srv, "PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}", {})
    client = srv.client(agg)
    managed = (await client.post("/edev", end_device("CD" * 20))).headers["Location"]
    subscribe = subscription_xml(managed + "/fsa", receiver.uri)
    assert (await client.post(managed + "/sub", subscribe)).status == 400  # private: refused

    assert await ok(srv, "GET", "/api/aggregators/fleet/notification-hosts") == {
        "hosts": [], "allow_http": False,
    }  # fmt: skip
    bad = {"hosts": ["224.0.0.1"]}
    assert (await srv.admin("PUT", "/api/aggregators/fleet/notification-hosts", bad))[0] == 400
    listed = await ok(
        srv, "PUT", "/api/aggregators/fleet/notification-hosts", {"hosts": ["127.0.0.0/8"]}
    )
    assert listed == {"hosts": ["127.0.0.0/8"], "allow_http": False}
    posted = await client.post(managed + "/sub", subscribe)
    assert posted.status == 201, posted.body
    elsewhere = subscription_xml(managed, "https://example.com/n")
    assert (await client.post(managed + "/sub", elsewhere)).status == 400  # not on its list
    plain = subscription_xml(managed, receiver.uri.replace("https", "http"))
    assert (await client.post(managed + "/sub", plain)).status == 400  # allow_http is off

    group = await ok(srv, "POST", "/api/groups", {"description": "feeder"})
    await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{'CD' * 20}")
    (notification,) = await receiver.wait(1)
    assert notification.findtext(f"{SEP}subscribedResource") == managed + "/fsa"

    # a device certificate keeps the global rules
    device = srv.pki.device_a
    href = await register(srv, device)
    own = subscription_xml(href, receiver.uri)
    assert (await srv.client(device).post(href + "/sub", own)).status == 400
    # an empty list restores the global rules for the aggregator too
    await ok(srv, "PUT", "/api/aggregators/fleet/notification-hosts", {"hosts": []})
    assert (await client.post(managed + "/sub", subscribe)).status == 400
    assert (await client.post(managed + "/sub", elsewhere)).status == 201


# ---- item 2: EndDeviceList is subscribable -------------------------------------------------
@BACKENDS
async def test_aggregator_subscribes_to_its_end_device_list(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Item 2: sep.xsd makes EndDeviceList a SubscribableList; an aggregator subscribes to
    /edev to learn of devices added or removed (those it may see: only its own fleet)."""
    from test_aggregator_der import end_device

    srv = await lab_server(make_server)
    agg, other = srv.pki.aggregator, srv.pki.aggregator_2
    for name, cert in (("fleet", agg), ("rival", other)):
        await ok(srv, "POST", "/api/aggregators", {"name": name})
        await ok(srv, "PUT", f"/api/aggregators/{name}/certificates/{cert.lfdi}", {})
    client, rival = srv.client(agg), srv.client(other)
    assert (await client.post("/edev", end_device("A1" * 20))).status == 201
    listing = await client.get("/edev?l=10")
    assert listing.xml().get("subscribable") == "1"
    own = listing.xml()[0]  # the aggregator's own EndDevice (item 8) holds its subscriptions
    assert own.findtext(f"{SEP}lFDI") == agg.lfdi
    sub = subscription_xml("/edev", receiver.uri, limit=10)
    posted = await client.post(f"{own.get('href')}/sub", sub)
    assert posted.status == 201, posted.body
    assert (await rival.post("/edev", end_device("B2" * 20))).status == 201  # not its fleet

    second = (await client.post("/edev", end_device("A3" * 20))).headers["Location"]
    (added,) = await receiver.wait(1)
    assert added.findtext(f"{SEP}subscribedResource") == "/edev"
    resource = added.find(f"{SEP}Resource")
    assert resource is not None and resource.get("all") == "3"
    assert srv.validator.validate(added), srv.validator.error_log
    assert (await client.delete(second)).status == 204
    (_, removed) = await receiver.wait(2)
    gone = removed.find(f"{SEP}Resource")
    assert gone is not None and gone.get("all") == "2"
    assert [e.findtext(f"{SEP}lFDI") for e in gone] == [agg.lfdi, "A1" * 20]
    await srv.admin("PUT", f"/api/end-devices/{'A5' * 20}", {"aggregator": "fleet", "pin": 111115})
    (*_, pre_registered) = await receiver.wait(3)
    assert pre_registered.find(f"{SEP}Resource").get("all") == "3"  # type: ignore[union-attr]


# ---- item 8: the CSIP-AUS aggregator model --------------------------------------------------
@BACKENDS
async def test_csip_aus_aggregator_has_its_own_end_device_holding_its_subscriptions(
    make_server: ServerFactory, receiver: Receiver
) -> None:
    """Item 8: an aggregator's certificate has its own EndDevice (its lFDI and sFDI), first in
    its EndDeviceList; its subscriptions, for any resource of the devices it manages, are
    created and found under that EndDevice's SubscriptionList only: walking everything it can
    reach finds exactly one SubscriptionList."""
    from test_aggregator_der import end_device

    srv = await make_server(
        profile="csip-aus", notification_allow_private=True, outbox_retry_delays=[0.2]
    )
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "fleet"})
    await ok(srv, "PUT", f"/api/aggregators/fleet/certificates/{agg.lfdi}", {})
    client = srv.client(agg)
    managed = (await client.post("/edev", end_device("E7" * 20))).headers["Location"]
    group = await ok(srv, "POST", "/api/groups", {"description": "feeder"})
    program = await ok(
        srv, "POST", f"/api/groups/{group['id']}/programs", {"description": "p", "primacy": 1}
    )
    await ok(srv, "PUT", f"/api/groups/{group['id']}/members/{'E7' * 20}")

    listing = (await client.get("/edev?l=10")).xml()
    own, device = listing
    assert (own.findtext(f"{SEP}lFDI"), own.findtext(f"{SEP}sFDI")) == (agg.lfdi, str(agg.sfdi))
    assert device.get("href") == managed
    assert own.find(f"{SEP}DERListLink") is None  # it speaks for no DER of its own
    assert device.find(f"{SEP}SubscriptionListLink") is None
    own_sub = own.find(f"{SEP}SubscriptionListLink")
    assert own_sub is not None
    holder = own_sub.get("href") or ""
    derc = f"{program['href']}/derc"
    assert (await client.post(managed + "/sub", subscription_xml(derc, receiver.uri))).status == 404
    assert (await client.get(managed + "/sub")).status == 404
    posted = await client.post(holder, subscription_xml(derc, receiver.uri))
    assert posted.status == 201, posted.body
    assert posted.headers["Location"].startswith(holder + "/")
    fsa = subscription_xml(managed + "/fsa", receiver.uri)
    assert (await client.post(holder, fsa)).status == 201
    assert (await client.get(holder)).xml().get("all") == "2"

    now = await server_now(srv)
    await ok(srv, "POST", f"/api/programs/{program['id']}/controls", control(now + 60))
    (notification,) = await receiver.wait(1)
    assert notification.findtext(f"{SEP}subscribedResource") == derc

    seen = await walk(client)
    lists = sorted(h for h in seen if h.endswith("/sub"))
    assert lists == [holder], lists
    # the documents a client PUTs answer 404 until it has (the documented exception of item 7)
    unput = ("/di", "/dstat", "/ps", "/cp", "/dercap", "/derg", "/ders", "/dera")
    broken = {h: s for h, s in seen.items() if s != 200 and not h.endswith(unput)}
    assert not broken, broken
    # a device certificate keeps its own SubscriptionList
    device_cert = srv.pki.device_a
    href = await register(srv, device_cert)
    mine = (await srv.client(device_cert).get(href)).xml()
    assert mine.find(f"{SEP}SubscriptionListLink") is not None
