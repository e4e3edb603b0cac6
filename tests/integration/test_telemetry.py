"""Telemetry (BASIC-029, CSIP IG metering mirror) over real mutual TLS, SQLite and PostgreSQL:
MirrorUsagePointList, MirrorUsagePoint, MirrorMeterReading(List) with ReadingTypes, readings
read back through the admin API with exact values, postRate per device and globally."""

from __future__ import annotations

import secrets

from csip.config import DEFAULT_POLL_RATES
from csip.pki.testpki import IssuedCert

from helpers import end_device_xml, register
from support import BACKENDS, Running, Sep2Client, ServerFactory, settle_bus

pytestmark = BACKENDS

NS = 'xmlns="urn:ieee:std:2030.5:ns"'
PEN = "0000A4F1"
START = 1_700_000_000


def mrid(n: int) -> str:
    return f"{n:024X}{PEN}"


def reading_type(uom: int, mult: int = 0, **extra: int) -> str:
    fields = {"kind": 37, **extra, "powerOfTenMultiplier": mult, "uom": uom}
    order = [
        "accumulationBehaviour",
        "commodity",
        "dataQualifier",
        "flowDirection",
        "intervalLength",
        "kind",
        "phase",
        "powerOfTenMultiplier",
        "uom",
    ]
    body = "".join(f"<{k}>{fields[k]}</{k}>" for k in order if k in fields)
    return f"<ReadingType>{body}</ReadingType>"


def mmr(n: int, rt: str = "", reading: str = "", description: str = "", ns: str = "") -> str:
    desc = f"<description>{description}</description>" if description else ""
    open_tag = f"<MirrorMeterReading {ns}>" if ns else "<MirrorMeterReading>"
    return f"{open_tag}<mRID>{mrid(n)}</mRID>{desc}{reading}{rt}</MirrorMeterReading>"


def reading(value: int, start: int = START, duration: int = 60, quality: str = "") -> str:
    flags = f"<qualityFlags>{quality}</qualityFlags>" if quality else ""
    return (
        f"<Reading>{flags}<timePeriod><duration>{duration}</duration><start>{start}</start>"
        f"</timePeriod><value>{value}</value></Reading>"
    )


def mup_xml(lfdi: str, n: int = 1, mmrs: str = "", post_rate: int | None = None) -> str:
    rate = f"<postRate>{post_rate}</postRate>" if post_rate is not None else ""
    return (
        f"<MirrorUsagePoint {NS}><mRID>{mrid(1000 + n)}</mRID><description>site</description>"
        "<roleFlags>0049</roleFlags><serviceCategoryKind>0</serviceCategoryKind>"
        f"<status>1</status><deviceLFDI>{lfdi}</deviceLFDI>{mmrs}{rate}</MirrorUsagePoint>"
    )


def mmr_list(*items: str) -> str:
    return f'<MirrorMeterReadingList {NS} all="{len(items)}" results="{len(items)}">' + (
        "".join(items) + "</MirrorMeterReadingList>"
    )


#: BASIC-029 quantities: (mmr number, uom, multiplier, phase, extra, raw value, physical)
QUANTITIES = [
    (1, 38, 0, 128, {"dataQualifier": 2}, 4321, 4321.0),  # W, phase A
    (2, 38, 0, 64, {"dataQualifier": 2}, -1200, -1200.0),  # W, phase B (import)
    (3, 38, 3, 224, {"dataQualifier": 2}, 5, 5000.0),  # kW, three phase
    (4, 63, 0, 128, {"dataQualifier": 2}, -250, -250.0),  # var
    (5, 29, -1, 129, {"dataQualifier": 2}, 2305, 230.5),  # V, phase AN, deci-volts
    (6, 29, -1, 65, {"dataQualifier": 2}, 2291, 229.1),  # V, phase BN
    (7, 33, -2, 0, {"dataQualifier": 2}, 5002, 50.02),  # Hz, centi-hertz
    (8, 72, 0, 224, {"kind": 12, "accumulationBehaviour": 9, "flowDirection": 1}, 123456, 123456),
    (9, 0, -2, 0, {"kind": 0}, 8250, 82.5),  # state of charge, hundredths of a percent
]


def declared(n: int, uom: int, mult: int, phase: int, extra: dict[str, int]) -> str:
    return mmr(n, reading_type(uom, mult, phase=phase, **extra), description=f"q{n}")


async def create_mup(client: Sep2Client, lfdi: str, n: int = 1, mmrs: str = "") -> str:
    reply = await client.post("/mup", mup_xml(lfdi, n, mmrs))
    assert reply.status == 201, reply.body
    return str(reply.headers["Location"])


async def readings(srv: Running, lfdi: str, query: str = "") -> dict[str, object]:
    status, body = await srv.admin("GET", f"/api/end-devices/{lfdi}/readings{query}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def test_basic_029_mirror_walk_and_exact_readback(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)

    dcap = await client.get("/dcap")
    links = {child.tag.split("}")[1]: child.attrib for child in dcap.xml()}
    assert links["MirrorUsagePointListLink"] == {"href": "/mup", "all": "0"}
    empty = await client.get("/mup")
    assert (empty.xml().get("all"), empty.xml().get("results")) == ("0", "0")
    assert empty.xml().get("pollRate") == str(DEFAULT_POLL_RATES["MirrorUsagePointList"])

    mmrs = "".join(declared(n, u, m, p, e) for n, u, m, p, e, _, _ in QUANTITIES)
    href = await create_mup(client, device.lfdi, mmrs=mmrs)
    assert href.startswith("/mup/")

    mup = await client.get(href)
    assert mup.status == 200
    assert mup.find("s:mRID") == mrid(1001)
    assert mup.find("s:deviceLFDI") == device.lfdi
    assert mup.find("s:roleFlags") == "0049"
    children = mup.xml().findall("{urn:ieee:std:2030.5:ns}MirrorMeterReading")
    assert [c.findtext("{urn:ieee:std:2030.5:ns}mRID") for c in children] == [
        mrid(q[0]) for q in QUANTITIES
    ]
    first_href = children[0].get("href")
    one = await client.get(first_href)
    assert one.status == 200 and one.find("s:ReadingType/s:uom") == "38"
    assert (await client.get("/dcap")).xml().find(
        "{urn:ieee:std:2030.5:ns}MirrorUsagePointListLink"
    ).get("all") == "1"

    values = [mmr(n, reading=reading(v, quality="01")) for n, _, _, _, _, v, _ in QUANTITIES]
    posted = await client.post(href, mmr_list(*values))
    assert posted.status == 201, posted.body
    single = await client.post(href, mmr(1, reading=reading(4400, start=START + 60), ns=NS))
    assert single.status == 201, single.body
    assert single.headers["Location"] == first_href

    body = await readings(srv, device.lfdi)
    assert body["count"] == len(QUANTITIES) + 1
    groups = {g["mirror_meter_reading"]: g for g in body["reading_types"]}  # type: ignore[attr-defined]
    for n, uom, mult, phase, _, raw, physical in QUANTITIES:
        group = groups[mrid(n)]
        assert group["reading_type"]["uom"] == uom
        assert group["reading_type"]["phase"] == phase
        assert group["reading_type"]["power_of_ten_multiplier"] == mult
        oldest = group["readings"][-1]
        assert (oldest["value"], oldest["power_of_ten_multiplier"]) == (raw, mult)
        assert oldest["physical"] == physical
        assert oldest["start"] == START and oldest["duration"] == 60
        assert oldest["quality_flags"] == 1
    watts = groups[mrid(1)]
    assert watts["latest"]["value"] == 4400 and watts["latest"]["start"] == START + 60
    assert groups[mrid(9)]["reading_type"]["unit"] == "%"
    assert groups[mrid(5)]["latest"]["physical_exact"] == "230.5"

    window = await readings(srv, device.lfdi, f"?since={START + 1}&until={START + 120}")
    assert window["count"] == 1
    # the limit bounds the list, never which ReadingTypes show their latest reading
    limited = await readings(srv, device.lfdi, "?limit=1")
    assert limited["count"] == 1
    latest = {g["mirror_meter_reading"]: g["latest"]["value"] for g in limited["reading_types"]}  # type: ignore[attr-defined]
    assert latest == {mrid(n): (4400 if n == 1 else v) for n, _, _, _, _, v, _ in QUANTITIES}


async def test_repeat_post_updates_instead_of_duplicating(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    rt = declared(1, 38, 0, 128, {})
    href = await create_mup(client, device.lfdi, mmrs=rt)
    again = await client.post("/mup", mup_xml(device.lfdi, mmrs=rt + declared(2, 63, 0, 128, {})))
    assert again.status == 204
    assert again.headers["Location"] == href
    listing = await client.get("/mup?l=10")
    assert listing.xml().get("all") == "1"
    mup = await client.get(href)
    assert len(mup.xml().findall("{urn:ieee:std:2030.5:ns}MirrorMeterReading")) == 2
    # a second mRID is a second MirrorUsagePoint
    other = await create_mup(client, device.lfdi, n=2)
    assert other != href
    assert (await client.get("/mup?l=10")).xml().get("all") == "2"
    # posting the same reading twice keeps one (a retry), with the later value
    for value in (100, 101):
        assert (await client.post(href, mmr_list(mmr(1, reading=reading(value))))).status == 201
    body = await readings(srv, device.lfdi)
    assert body["count"] == 1
    assert body["reading_types"][0]["latest"]["value"] == 101  # type: ignore[index]


async def test_devices_and_aggregators_reach_only_their_own_mirrors(srv: Running) -> None:
    a, b = srv.pki.device_a, srv.pki.device_b
    await register(srv, a)
    await register(srv, b)
    client_a, client_b = srv.client(a), srv.client(b)
    href = await create_mup(client_a, a.lfdi, mmrs=declared(1, 38, 0, 128, {}))

    # B cannot post a MirrorUsagePoint for A's LFDI, nor read, post to or delete A's
    refused = await client_b.post("/mup", mup_xml(a.lfdi, n=7))
    assert refused.status == 403
    assert (await client_b.get(href)).status == 404
    assert (await client_b.post(href, mmr_list(mmr(1, reading=reading(1))))).status == 404
    assert (await client_b.delete(href)).status == 404
    assert (await client_b.get("/mup")).xml().get("all") == "0"
    assert (await readings(srv, a.lfdi))["count"] == 0

    # an LFDI no EndDevice has: not one this client may post for
    unknown = secrets.token_hex(20).upper()
    assert (await client_b.post("/mup", mup_xml(unknown))).status == 403

    # an aggregator posts only for the devices it manages
    agg = srv.pki.aggregator
    assert (await srv.admin("POST", "/api/aggregators", {"name": "agg-one"}))[0] == 201
    status, _ = await srv.admin("PUT", f"/api/aggregators/agg-one/certificates/{agg.lfdi}", {})
    assert status == 200
    managed = secrets.token_hex(20).upper()
    status, _ = await srv.admin(
        "POST", "/api/end-devices", [{"lfdi": managed, "aggregator": "agg-one"}]
    )
    assert status == 201
    client_agg = srv.client(agg)
    assert (await client_agg.post("/mup", mup_xml(a.lfdi, n=3))).status == 403
    agg_href = await create_mup(client_agg, managed, n=4, mmrs=declared(11, 29, 0, 0, {}))
    assert (await client_agg.get(href)).status == 404
    listing = await client_agg.get("/mup?l=10")
    assert [m.get("href") for m in listing.xml()] == [agg_href]
    assert (await client_a.get(agg_href)).status == 404
    assert (await client_agg.post(agg_href, mmr_list(mmr(11, reading=reading(230))))).status == 201
    assert (await readings(srv, managed))["count"] == 1


async def test_wrong_units_and_multipliers_are_rejected_with_nothing_stored(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    bad_types = [
        reading_type(132),  # BTU: a uom csip does not accept
        reading_type(38, 12),  # W with a multiplier outside csip's range
        reading_type(33, 3),  # kHz: not a frequency a grid has
        reading_type(72, 0, kind=37),  # Wh declared as power
        reading_type(38, 0, kind=12),  # W declared as energy
        reading_type(38, 0, accumulationBehaviour=9),  # a rate as a summation
        reading_type(38, 0, phase=7),  # reserved phase code
        "<ReadingType><kind>37</kind></ReadingType>",  # no uom at all: never guessed
    ]
    for index, rt in enumerate(bad_types):
        reply = await client.post("/mup", mup_xml(device.lfdi, mmrs=mmr(1, rt)))
        assert reply.status == 400, (index, reply.body)
        assert reply.find("s:reasonCode") == "1", index
    assert (await client.get("/mup")).xml().get("all") == "0"

    href = await create_mup(client, device.lfdi, mmrs=declared(1, 0, -2, 0, {"kind": 0}))
    good = mmr(1, reading=reading(5000))
    impossible = [
        mmr_list(good, mmr(1, reading=reading(10001, start=START + 60))),  # 100.01 % SoC
        mmr_list(good, mmr(2, reading=reading(1))),  # a ReadingType never declared
        mmr_list(good, mmr(3, reading_type(38, 12), reading(1))),  # declared wrongly
        mmr_list(good, good),  # the same mRID twice
    ]
    for index, body in enumerate(impossible):
        reply = await client.post(href, body)
        assert reply.status == 400, (index, reply.body)
        assert reply.find("s:reasonCode") == "1", index
    assert (await readings(srv, device.lfdi))["count"] == 0
    mup = await client.get(href)
    assert len(mup.xml().findall("{urn:ieee:std:2030.5:ns}MirrorMeterReading")) == 1

    # a new ReadingType for a known mRID replaces the old one (IEEE 2030.5 §10.11.3: written
    # over), and the readings of the old type go with it (issue 9 item 4)
    assert (await client.post(href, mmr_list(good))).status == 201
    changed = mmr_list(mmr(1, reading_type(38, 0)))
    assert (await client.post(href, changed)).status == 201
    assert (await client.get(href)).find("s:MirrorMeterReading/s:ReadingType/s:uom") == "38"
    assert (await readings(srv, device.lfdi))["count"] == 0


async def test_post_rate_per_device_and_globally_visible_on_next_get(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    reply = await client.post("/mup", mup_xml(device.lfdi, post_rate=120))
    href = reply.headers["Location"]
    assert (await client.get(href)).find("s:postRate") == "120"  # the device's wish

    status, _ = await srv.admin("PUT", "/api/rates", {"post_rate": 300})
    assert status == 200
    assert (await client.get(href)).find("s:postRate") == "300"
    assert (await client.get("/mup")).find("s:MirrorUsagePoint/s:postRate") == "300"

    status, body = await srv.admin(
        "PUT", f"/api/end-devices/{device.lfdi}/post-rate", {"post_rate": 60}
    )
    assert status == 200 and body["post_rate"] == 60
    assert (await client.get(href)).find("s:postRate") == "60"
    status, mups = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/mirror-usage-points")
    assert status == 200 and mups[0]["post_rate"] == 60 and mups[0]["requested_post_rate"] == 120

    status, _ = await srv.admin(
        "PUT", f"/api/end-devices/{device.lfdi}/post-rate", {"post_rate": None}
    )
    assert status == 200
    assert (await client.get(href)).find("s:postRate") == "300"

    status, _ = await srv.admin("PUT", "/api/rates", {"poll_rates": {"MirrorUsagePointList": 77}})
    assert status == 200
    assert (await client.get("/mup")).xml().get("pollRate") == "77"


async def test_mirror_usage_point_list_pages(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    hrefs = [await create_mup(client, device.lfdi, n=n) for n in range(5)]
    first = await client.get("/mup")
    assert (first.xml().get("all"), first.xml().get("results")) == ("5", "1")
    page = await client.get("/mup?s=1&l=3")
    assert [m.get("href") for m in page.xml()] == hrefs[1:4]
    tail = await client.get("/mup?s=4&l=10")
    assert [m.get("href") for m in tail.xml()] == hrefs[4:]
    beyond = await client.get("/mup?s=9&l=10")
    assert (beyond.xml().get("all"), beyond.xml().get("results")) == ("5", "0")
    assert (await client.get("/mup?l=x")).status == 400


async def test_unchanged_poll_is_served_from_the_render_cache(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    href = await create_mup(client, device.lfdi, mmrs=declared(1, 38, 0, 128, {}))
    await settle_bus(srv)  # on PostgreSQL the write's NOTIFY echo comes back later
    for path in ("/mup", href):
        await client.get(path)
    stats = srv.server.sep2.cache.stats
    renders = stats.renders
    for path in ("/mup", href, "/mup", href):
        assert (await client.get(path)).status == 200
    assert stats.renders == renders
    # readings change no rendered bytes; a new MirrorMeterReading does
    assert (await client.post(href, mmr_list(mmr(1, reading=reading(1))))).status == 201
    await client.get(href)
    assert stats.renders == renders
    assert (await client.post(href, mmr_list(declared(2, 63, 0, 128, {})))).status == 201
    mup = await client.get(href)
    assert len(mup.xml().findall("{urn:ieee:std:2030.5:ns}MirrorMeterReading")) == 2


async def delete_scenario(srv: Running, owner: IssuedCert) -> tuple[Sep2Client, str]:
    await register(srv, owner)
    client = srv.client(owner)
    href = await create_mup(client, owner.lfdi, mmrs=declared(1, 38, 0, 128, {}))
    assert (await client.post(href, mmr_list(mmr(1, reading=reading(7))))).status == 201
    return client, href


async def test_delete_one_all_of_a_device_and_with_the_device(srv: Running) -> None:
    device = srv.pki.device_a
    client, href = await delete_scenario(srv, device)
    assert (await client.delete(href)).status == 204
    assert (await client.get(href)).status == 404
    assert (await readings(srv, device.lfdi))["count"] == 0

    href = await create_mup(client, device.lfdi, n=2, mmrs=declared(1, 38, 0, 128, {}))
    await create_mup(client, device.lfdi, n=3)
    status, body = await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}/mirror-usage-points")
    assert status == 200 and body["removed"] == 2
    assert (await client.get(href)).status == 404
    assert (await client.get("/mup")).xml().get("all") == "0"

    href = await create_mup(client, device.lfdi, n=4, mmrs=declared(1, 38, 0, 128, {}))
    assert (await client.post(href, mmr_list(mmr(1, reading=reading(8))))).status == 201
    status, _ = await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}")
    assert status == 204
    assert (await client.get(href)).status == 404
    # registered again, the device starts with no mirrors and no readings
    reply = await client.post("/edev", end_device_xml(device.lfdi, device.sfdi))
    assert reply.status == 201
    assert (await client.get("/mup")).xml().get("all") == "0"
    assert (await readings(srv, device.lfdi))["count"] == 0


async def test_delete_all_mirrors_of_an_aggregator(srv: Running) -> None:
    agg = srv.pki.aggregator
    assert (await srv.admin("POST", "/api/aggregators", {"name": "agg-one"}))[0] == 201
    await srv.admin("PUT", f"/api/aggregators/agg-one/certificates/{agg.lfdi}", {})
    lfdis = [secrets.token_hex(20).upper() for _ in range(3)]
    items = [{"lfdi": lfdi, "aggregator": "agg-one"} for lfdi in lfdis]
    assert (await srv.admin("POST", "/api/end-devices", items))[0] == 201
    client = srv.client(agg)
    for n, lfdi in enumerate(lfdis):
        await create_mup(client, lfdi, n=n)
    await register(srv, srv.pki.device_a)
    await create_mup(srv.client(srv.pki.device_a), srv.pki.device_a.lfdi)
    assert (await client.get("/mup")).xml().get("all") == "3"
    status, body = await srv.admin("DELETE", "/api/aggregators/agg-one/mirror-usage-points")
    assert status == 200 and body["removed"] == 3
    assert (await client.get("/mup")).xml().get("all") == "0"
    assert (await srv.client(srv.pki.device_a).get("/mup")).xml().get("all") == "1"


async def test_own_lfdi_must_be_registered_before_mirroring(srv: Running) -> None:
    device = srv.pki.device_a
    client = srv.client(device)
    reply = await client.post("/mup", mup_xml(device.lfdi))
    assert reply.status == 404
    assert (await readings_status(srv, device.lfdi)) == 404
    await register(srv, device)
    assert (await client.post("/mup", mup_xml(device.lfdi))).status == 201


async def readings_status(srv: Running, lfdi: str) -> int:
    status, _ = await srv.admin("GET", f"/api/end-devices/{lfdi}/readings")
    return status


async def test_mirror_walk_in_the_csip_aus_profile(make_server: ServerFactory) -> None:
    srv = await make_server(profile="csip-aus")
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)  # validates every body against csipaus-core.xsd
    mmrs = declared(1, 38, 0, 0, {"dataQualifier": 2}) + declared(2, 29, -1, 0, {})
    href = await create_mup(client, device.lfdi, mmrs=mmrs)
    posted = await client.post(
        href, mmr_list(mmr(1, reading=reading(-3000)), mmr(2, reading=reading(2401)))
    )
    assert posted.status == 201
    assert (await client.get(href)).status == 200
    assert (await client.get("/mup")).xml().get("all") == "1"
    body = await readings(srv, device.lfdi)
    physical = {g["mirror_meter_reading"]: g["latest"]["physical"] for g in body["reading_types"]}  # type: ignore[attr-defined]
    assert physical == {mrid(1): -3000.0, mrid(2): 240.1}


async def test_a_mirror_usage_point_post_may_carry_readings_and_reading_sets(srv: Running) -> None:
    device = srv.pki.device_a
    await register(srv, device)
    client = srv.client(device)
    reading_set = (
        f"<MirrorReadingSet><mRID>{mrid(77)}</mRID><timePeriod><duration>300</duration>"
        f"<start>{START}</start></timePeriod>{reading(10, START)}{reading(11, START + 60)}"
        "</MirrorReadingSet>"
    )
    # MirrorMeterReading order: mRID, description, MirrorReadingSet, Reading, ReadingType
    watts = mmr(1, reading_type(38, 0, phase=128), reading_set)
    await create_mup(client, device.lfdi, mmrs=watts)
    body = await readings(srv, device.lfdi)
    assert body["count"] == 2
    (group,) = body["reading_types"]  # type: ignore[misc]
    assert [r["value"] for r in group["readings"]] == [11, 10]
