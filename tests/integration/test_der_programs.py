"""The DER function set as a device walks it and the utility drives it (CSIP IG §6; CORE-010,
CORE-012, CORE-013, CORE-021, CORE-022, CORE-023, BASIC-002, BASIC-016..026), over real mutual
TLS on SQLite and PostgreSQL. The server clock is moved through the admin API, as a lab does."""

from __future__ import annotations

import time
from typing import Any

from csip.pki.testpki import IssuedCert

from helpers import register
from support import BACKENDS, Reply, Running, ServerFactory, settle_bus

pytestmark = BACKENDS
SEP = "{urn:ieee:std:2030.5:ns}"


async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status, data = await srv.admin(method, path, body)
    assert status in (200, 201, 204), (method, path, status, data)
    return data


async def topology(srv: Running, device: IssuedCert) -> dict[str, Any]:
    """utility > substation > feeder, the device on the feeder; P1 on the utility (primacy
    10), P2 on the feeder (primacy 1)."""
    href = await register(srv, device)
    utility = await ok(srv, "POST", "/api/groups", {"description": "utility", "level": "utility"})
    substation = await ok(
        srv,
        "POST",
        "/api/groups",
        {"description": "sub 7", "level": "substation", "parent": utility["id"]},
    )
    feeder = await ok(
        srv,
        "POST",
        "/api/groups",
        {"description": "feeder 7-2", "level": "feeder", "parent": substation["id"]},
    )
    await ok(srv, "PUT", f"/api/groups/{feeder['id']}/members/{device.lfdi}")
    p1 = await ok(
        srv,
        "POST",
        f"/api/groups/{utility['id']}/programs",
        {"description": "system", "primacy": 10},
    )
    p2 = await ok(
        srv, "POST", f"/api/groups/{feeder['id']}/programs", {"description": "feeder", "primacy": 1}
    )
    return {
        "edev": href,
        **{"utility": utility, "substation": substation, "feeder": feeder},
        **{"p1": p1, "p2": p2},
    }


def control(start: int, duration: int = 600, **base: Any) -> dict[str, Any]:
    return {
        "controls": [
            {"start": start, "duration": duration, "base": base, "response_required": "03"}
        ]
    }


def statuses(reply: Reply) -> list[tuple[str, str]]:
    root = reply.xml()
    return [
        (c.findtext(f"{SEP}mRID") or "", c.findtext(f"{SEP}EventStatus/{SEP}currentStatus") or "")
        for c in root.findall(f"{SEP}DERControl")
    ]


async def server_now(srv: Running) -> int:
    return int((await ok(srv, "GET", "/api/clock"))["now"])


async def test_device_walks_fsa_programs_and_controls(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)

    fsa_list = await client.get(world["edev"] + "/fsa?l=10")
    assert fsa_list.status == 200
    hrefs = [f.get("href") for f in fsa_list.xml().findall(f"{SEP}FunctionSetAssignments")]
    assert hrefs == [world[k]["href"] for k in ("utility", "substation", "feeder")]

    # the DER's AssociatedDERProgramList: every program reaching the device, by primacy
    associated = await client.get(world["edev"] + "/der/1/derp?l=5")
    assert [p.get("href") for p in associated.xml()] == [world["p2"]["href"], world["p1"]["href"]]
    programs = await client.get(f"{world['utility']['href']}/derp?l=5")
    assert [p.findtext(f"{SEP}primacy") for p in programs.xml()] == ["10"]
    program = await client.get(world["p1"]["href"])
    assert program.link("DERControlListLink") == {"href": f"{world['p1']['href']}/derc", "all": "0"}
    assert program.link("ActiveDERControlListLink")["href"].endswith("/actderc")
    assert program.link("DefaultDERControlLink") == {}

    now = await server_now(srv)
    created = await ok(
        srv, "POST", f"/api/programs/{world['p1']['id']}/controls",
        control(now + 60, opModMaxLimW=5000, opModTargetW={"multiplier": -1, "value": 12345}),
    )  # fmt: skip
    mrid = created[0]["mrid"]
    assert int(mrid, 16) & 0xFFFFFFFF == 0  # our PEN (0 in tests) in the low 32 bits
    listing = await client.get(f"{world['p1']['href']}/derc?l=10")
    assert statuses(listing) == [(mrid, "0")]
    one = await client.get(created[0]["href"])
    assert one.find("s:DERControlBase/s:opModTargetW/s:value") == "12345"
    assert one.find("s:DERControlBase/s:opModTargetW/s:multiplier") == "-1"
    assert one.find("s:DERControlBase/s:opModMaxLimW") == "5000"
    assert one.find("s:DERControlBase/s:opModConnect") is None  # absent modes stay absent
    assert one.xml().get("replyTo") == f"/rsps/{world['p1']['id']}/rsp"
    assert (await client.get(f"{world['p1']['href']}/actderc")).xml().get("all") == "0"

    # the clock reaches the start: active, with no write in between
    await ok(srv, "PUT", "/api/clock", {"advance": 61})
    assert statuses(await client.get(f"{world['p1']['href']}/derc?l=10")) == [(mrid, "1")]
    active = await client.get(f"{world['p1']['href']}/actderc?l=10")
    assert (active.xml().get("all"), statuses(active)) == ("1", [(mrid, "1")])
    # and past the end it leaves the active list
    await ok(srv, "PUT", "/api/clock", {"advance": 600})
    assert (await client.get(f"{world['p1']['href']}/actderc")).xml().get("all") == "0"
    # a lab moving the clock back sees the earlier status again, not a cached one
    await ok(srv, "PUT", "/api/clock", {"advance": -661})
    assert statuses(await client.get(f"{world['p1']['href']}/derc?l=10")) == [(mrid, "0")]


async def test_newer_control_supersedes_and_cancel_marks_cancelled(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    pid, href = world["p1"]["id"], world["p1"]["href"]
    now = await server_now(srv)
    (first,) = await ok(
        srv, "POST", f"/api/programs/{pid}/controls", control(now + 100, opModMaxLimW=5000)
    )
    (independent,) = await ok(
        srv, "POST", f"/api/programs/{pid}/controls", control(now + 100, opModConnect=True)
    )
    (second,) = await ok(
        srv, "POST", f"/api/programs/{pid}/controls", control(now + 200, opModMaxLimW=4000)
    )
    listing = dict(statuses(await client.get(f"{href}/derc?l=10")))
    assert listing == {first["mrid"]: "4", independent["mrid"]: "0", second["mrid"]: "0"}
    superseded = await client.get(first["href"])
    assert superseded.find("s:EventStatus/s:reason") == f"superseded by {second['mrid']}"

    cancelled = await ok(srv, "POST", f"/api/controls/{second['id']}/cancel", {})
    assert cancelled["cancelled"] == [second["mrid"]]
    listing = dict(statuses(await client.get(f"{href}/derc?l=10")))
    assert listing[second["mrid"]] == "2"
    assert listing[first["mrid"]] == "4"  # supersession is final
    # events are never deleted
    assert (await client.get(second["href"])).status == 200


async def test_higher_primacy_program_marks_potentially_superseded(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    now = await server_now(srv)
    (system,) = await ok(
        srv,
        "POST",
        f"/api/programs/{world['p1']['id']}/controls",
        control(now + 100, opModMaxLimW=5000),
    )
    system_status = (await client.get(system["href"])).find("s:EventStatus/s:potentiallySuperseded")
    assert system_status == "false"
    (feeder,) = await ok(
        srv,
        "POST",
        f"/api/programs/{world['p2']['id']}/controls",
        control(now + 50, opModMaxLimW=3000),
    )
    reply = await client.get(system["href"])
    assert reply.find("s:EventStatus/s:currentStatus") == "0"
    assert reply.find("s:EventStatus/s:potentiallySuperseded") == "true"
    assert (await client.get(feeder["href"])).find(
        "s:EventStatus/s:potentiallySuperseded"
    ) == "false"


async def test_cancel_all_for_a_device_and_randomized_cancel(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    now = await server_now(srv)
    body = control(now + 100, opModMaxLimW=5000)
    body["controls"][0]["randomize_start"] = 120
    (a,) = await ok(srv, "POST", f"/api/programs/{world['p1']['id']}/controls", body)
    (b,) = await ok(
        srv,
        "POST",
        f"/api/programs/{world['p2']['id']}/controls",
        control(now + 100, opModConnect=False),
    )
    assert (await client.get(a["href"])).find("s:randomizeStart") == "120"
    result = await ok(srv, "POST", f"/api/end-devices/{device.lfdi}/cancel", {"randomized": True})
    assert sorted(result["cancelled"]) == sorted([a["mrid"], b["mrid"]])
    assert (await client.get(a["href"])).find("s:EventStatus/s:currentStatus") == "3"


async def test_default_control_is_replaced_not_merged(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    pid, href = world["p1"]["id"], world["p1"]["href"]
    power_factor = {"displacement": 95, "excitation": False, "multiplier": -2}
    first = await ok(
        srv, "PUT", f"/api/programs/{pid}/default-control",
        {"base": {"opModMaxLimW": 8000, "opModFixedPFInjectW": power_factor},
         "settings": {"setGradW": 100, "setSoftGradW": 50}},
    )  # fmt: skip
    reply = await client.get(f"{href}/dderc")
    assert reply.find("s:setGradW") == "100" and reply.find("s:setSoftGradW") == "50"
    assert reply.find("s:DERControlBase/s:opModFixedPFInjectW/s:displacement") == "95"
    assert (await client.get(href)).link("DefaultDERControlLink") == {"href": f"{href}/dderc"}
    second = await ok(
        srv, "PUT", f"/api/programs/{pid}/default-control", {"base": {"opModConnect": True}}
    )
    assert second["mrid"] != first["mrid"]
    reply = await client.get(f"{href}/dderc")
    assert reply.find("s:setGradW") is None
    assert reply.find("s:DERControlBase/s:opModMaxLimW") is None
    assert reply.find("s:DERControlBase/s:opModConnect") == "true"


async def test_curves_and_curve_controls(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    pid, href = world["p1"]["id"], world["p1"]["href"]
    curve = await ok(
        srv, "POST", f"/api/programs/{pid}/curves",
        {"curve_type": 11, "points": [[92, 30], [98, 0], [102, 0], [108, -30]],
         "x_multiplier": 0, "y_multiplier": 0, "y_ref_type": 3},
    )  # fmt: skip
    listing = await client.get(f"{href}/dc?l=5")
    assert listing.xml().get("all") == "1"
    points = [
        (p.findtext(f"{SEP}xvalue"), p.findtext(f"{SEP}yvalue"))
        for p in listing.xml()[0].findall(f"{SEP}CurveData")
    ]
    assert points == [("92", "30"), ("98", "0"), ("102", "0"), ("108", "-30")]
    now = await server_now(srv)
    (voltvar,) = await ok(
        srv,
        "POST",
        f"/api/programs/{pid}/controls",
        control(now + 10, opModVoltVar={"curve": curve["id"]}),
    )
    reply = await client.get(voltvar["href"])
    assert reply.xml().find(f"{SEP}DERControlBase/{SEP}opModVoltVar").get("href") == curve["href"]
    wrong_type = control(now + 10, opModVoltWatt={"curve": curve["id"]})
    status, body = await srv.admin("POST", f"/api/programs/{pid}/controls", wrong_type)
    assert status == 400 and "curveType 12" in body["detail"]


async def test_bad_controls_are_refused_whole(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    pid = world["p1"]["id"]
    now = await server_now(srv)
    good = {"start": now, "duration": 60, "base": {"opModMaxLimW": 100}}
    for bad_base, message in (
        ({"opModWarpDrive": 1}, "unknown"),
        ({"opModTargetW": {"value": 70000, "multiplier": 0}}, "valid 2030.5"),
        ({"opModConnect": "yes"}, "true or false"),
        ({"opModExpLimW": {"value": 1, "multiplier": 3}}, "csip-aus"),
    ):
        batch = {"controls": [good, {"start": now, "duration": 60, "base": bad_base}]}
        status, body = await srv.admin("POST", f"/api/programs/{pid}/controls", batch)
        assert status == 400, bad_base
        assert message in body["detail"]
    assert await ok(srv, "GET", f"/api/programs/{pid}/controls") == []


async def test_other_devices_cannot_see_a_groups_programs(srv: Running) -> None:
    world = await topology(srv, srv.pki.device_a)
    await register(srv, srv.pki.device_b)
    other = srv.client(srv.pki.device_b)
    for path in (world["utility"]["href"], world["p1"]["href"], f"{world['p1']['href']}/derc"):
        assert (await other.get(path)).status == 404, path
    listing = await other.get("/rsps")
    assert listing.xml().get("all") == "0"


async def test_responses(srv: Running) -> None:
    device = srv.pki.device_a
    world = await topology(srv, device)
    await register(srv, srv.pki.device_b)
    client = srv.client(device)
    now = await server_now(srv)
    (created,) = await ok(
        srv,
        "POST",
        f"/api/programs/{world['p1']['id']}/controls",
        control(now + 10, opModMaxLimW=1),
    )
    reply_to = (await client.get(created["href"])).xml().get("replyTo")

    def response(lfdi: str, status: int, subject: str = created["mrid"]) -> str:
        return (
            '<DERControlResponse xmlns="urn:ieee:std:2030.5:ns">'
            f"<createdDateTime>{int(time.time())}</createdDateTime><endDeviceLFDI>{lfdi}</endDeviceLFDI>"
            f"<status>{status}</status><subject>{subject}</subject></DERControlResponse>"
        )

    posted = await client.post(reply_to, response(device.lfdi, 1))
    assert posted.status == 201 and posted.headers["Location"].startswith(reply_to + "/")
    assert (await client.post(reply_to, response(device.lfdi, 2))).status == 201
    assert (await client.post(reply_to, response(srv.pki.device_b.lfdi, 1))).status == 403
    assert (await client.post(reply_to, response(device.lfdi, 99))).status == 400
    assert (await client.post(reply_to, response(device.lfdi, 1, "AB" * 16))).status == 400
    listing = await client.get(reply_to + "?l=10")
    assert listing.xml().get("all") == "2"
    stored = await ok(srv, "GET", f"/api/end-devices/{device.lfdi}/responses")
    assert [r["status"] for r in stored] == [2, 1] or sorted(r["status"] for r in stored) == [1, 2]
    assert {r["subject"] for r in stored} == {created["mrid"]}
    # per group: the utility group (an ancestor of the device's feeder) reports the device
    report = await ok(srv, "GET", f"/api/groups/{world['utility']['id']}/report")
    assert report["total"] == 1
    (entry,) = report["devices"]
    assert entry["lfdi"] == device.lfdi
    assert sorted(r["status"] for r in entry["responses"]) == [1, 2]
    assert "readings" in entry and "der" in entry
    assert (await srv.admin("GET", "/api/groups/999/report"))[0] == 404
    assert (await srv.admin("GET", f"/api/groups/{world['utility']['id']}/report?limit=x"))[
        0
    ] == 400


async def test_program_polls_are_render_once_until_a_time_boundary(srv: Running) -> None:
    from sqlalchemy import event

    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    now = await server_now(srv)
    await ok(
        srv,
        "POST",
        f"/api/programs/{world['p1']['id']}/controls",
        control(now + 30, opModMaxLimW=1),
    )
    paths = [
        world["p1"]["href"],
        f"{world['p1']['href']}/derc",
        f"{world['p1']['href']}/actderc",
        world["edev"] + "/fsa",
    ]
    await settle_bus(srv)
    for path in paths:
        assert (await client.get(path)).status == 200
    assert srv.server.store is not None
    engine = srv.server.store.engine.sync_engine
    queries: list[str] = []

    def count(*args: Any) -> None:
        queries.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            for path in paths:
                assert (await client.get(path)).status == 200
        assert queries == []
        srv.server.clock.advance(31)  # a boundary: the next poll recomputes and shows it
        assert statuses(await client.get(f"{world['p1']['href']}/derc"))[0][1] == "1"
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_targeted_control_for_one_device(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    now = await server_now(srv)
    body = {
        "lfdi": device.lfdi,
        "primacy": 2,
        "start": now + 5,
        "duration": 60,
        "base": {"opModEnergize": False},
    }
    created = await ok(srv, "POST", "/api/controls", body)
    again = await ok(srv, "POST", "/api/controls", {**body, "start": now + 100})
    assert again["program"] == created["program"]  # the device's own program is reused
    fsa = await client.get(href + "/fsa")
    assert fsa.xml().get("all") == "1"
    assert (await client.get(created["href"])).find("s:DERControlBase/s:opModEnergize") == "false"


async def test_csip_aus_limits_in_the_csip_aus_profile(make_server: ServerFactory) -> None:
    srv = await make_server(profile="csip-aus")
    device = srv.pki.device_a
    await register(srv, device)
    now = await server_now(srv)
    limits = {
        "opModExpLimW": {"multiplier": 3, "value": 5},
        "opModGenLimW": {"multiplier": 0, "value": 2500},
    }
    body = {"lfdi": device.lfdi, "primacy": 1, "start": now, "duration": 300, "base": limits}
    created = await ok(srv, "POST", "/api/controls", body)
    reply = await srv.client(device).get(created["href"])
    base = reply.xml().find(f"{SEP}DERControlBase")
    assert base is not None
    limits = {child.tag: child.findtext(f"{SEP}value") for child in base}
    assert limits == {
        "{https://csipaus.org/ns}opModExpLimW": "5",
        "{https://csipaus.org/ns}opModGenLimW": "2500",
    }


async def test_bulk_membership_is_all_or_nothing(srv: Running) -> None:
    import secrets

    lfdis = [secrets.token_hex(20).upper() for _ in range(3)]
    await ok(srv, "POST", "/api/end-devices", [{"lfdi": x} for x in lfdis])
    group = await ok(srv, "POST", "/api/groups", {"description": "bulk"})
    unknown = secrets.token_hex(20).upper()
    status, body = await srv.admin(
        "POST", f"/api/groups/{group['id']}/members", {"lfdis": [*lfdis, unknown]}
    )
    assert status == 404 and unknown in body["detail"]
    added = await ok(srv, "POST", f"/api/groups/{group['id']}/members", {"lfdis": lfdis})
    assert added == {"added": 3}
    again = await ok(srv, "POST", f"/api/groups/{group['id']}/members", {"lfdis": lfdis[:1]})
    assert again == {"added": 0}


async def test_fifteen_level_group_tree(srv: Running) -> None:
    """CORE-011: the CSIP levels are labels, not a fixed depth."""
    device = srv.pki.device_a
    href = await register(srv, device)
    parent = None
    groups = []
    for level in range(15):
        body = {"description": f"level {level}", "level": f"L{level}", "parent": parent}
        group = await ok(srv, "POST", "/api/groups", body)
        groups.append(group)
        parent = group["id"]
    await ok(srv, "PUT", f"/api/groups/{parent}/members/{device.lfdi}")
    listing = await srv.client(device).get(href + "/fsa?l=20")
    found = [f.get("href") for f in listing.xml().findall(f"{SEP}FunctionSetAssignments")]
    assert listing.xml().get("all") == "15"
    assert found == [g["href"] for g in groups]
    now = await server_now(srv)
    body = control(now, opModFixedW=-2500)  # signed per cent of setMaxW, exactly as given
    target = {**body["controls"][0], "group": groups[0]["id"], "primacy": 3}
    created = await ok(srv, "POST", "/api/controls", target)
    reply = await srv.client(device).get(created["href"])
    assert reply.find("s:DERControlBase/s:opModFixedW") == "-2500"


CURVE_MODES = sorted(
    {
        "opModFreqWatt": 0,
        "opModHFRTMayTrip": 1,
        "opModHFRTMustTrip": 2,
        "opModHVRTMayTrip": 3,
        "opModHVRTMomentaryCessation": 4,
        "opModHVRTMustTrip": 5,
        "opModLFRTMayTrip": 6,
        "opModLFRTMustTrip": 7,
        "opModLVRTMayTrip": 8,
        "opModLVRTMomentaryCessation": 9,
        "opModLVRTMustTrip": 10,
        "opModVoltVar": 11,
        "opModVoltWatt": 12,
        "opModWattPF": 13,
        "opModWattVar": 14,
    }.items()
)


async def test_every_curve_mode_and_structured_mode(srv: Running) -> None:
    """BASIC-004/005/006/011/012/015: ride-through, volt-var/watt, freq-watt, watt-PF/var
    curves, frequency droop, fixed var, target var and absorb PF, each published exactly."""
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    pid = world["p1"]["id"]
    now = await server_now(srv)
    base: dict[str, Any] = {}
    for mode, curve_type in CURVE_MODES:
        curve = await ok(
            srv, "POST", f"/api/programs/{pid}/curves",
            {"curve_type": curve_type, "points": [[0, 100], [50, 60], [100, 0]],
             "x_multiplier": -1, "y_multiplier": 0, "y_ref_type": 1, "extras": {"vRef": 100}},
        )  # fmt: skip
        base[mode] = {"curve": curve["id"]}
    base["opModFreqDroop"] = {"dBOF": 36, "dBUF": 36, "kOF": 5, "kUF": 5, "openLoopTms": 500}
    base["opModFixedVar"] = {"refType": 2, "value": -1500}
    base["opModTargetVar"] = {"multiplier": 2, "value": -30}
    base["opModFixedPFAbsorbW"] = {"displacement": 90, "excitation": True, "multiplier": -2}
    (created,) = await ok(srv, "POST", f"/api/programs/{pid}/controls", control(now + 10, **base))
    reply = await client.get(created["href"])
    found = reply.xml().find(f"{SEP}DERControlBase")
    assert found is not None
    children = {child.tag.removeprefix(SEP): child for child in found}
    assert set(children) == set(base)
    curves = {c.get("href") for c in (await client.get(f"{world['p1']['href']}/dc?l=20")).xml()}
    for mode, _ in CURVE_MODES:
        assert children[mode].get("href") in curves
    assert children["opModFreqDroop"].findtext(f"{SEP}openLoopTms") == "500"
    assert children["opModFixedVar"].findtext(f"{SEP}value") == "-1500"
    assert children["opModTargetVar"].findtext(f"{SEP}multiplier") == "2"
    assert children["opModFixedPFAbsorbW"].findtext(f"{SEP}excitation") == "true"
    one_curve = await client.get(f"{world['p1']['href']}/dc?l=1")
    assert one_curve.find("s:DERCurve/s:vRef") == "100"
    assert one_curve.find("s:DERCurve/s:xMultiplier") == "-1"


async def test_basic_program_scenarios(srv: Running) -> None:
    """BASIC-016..020, 025, 026 as a server serves them: defaults per program, events in
    sequence (default -> event -> default), non-overlapping events both kept, and
    independent modes across programs never marked as superseding."""
    device = srv.pki.device_a
    world = await topology(srv, device)
    client = srv.client(device)
    p1, p2 = world["p1"], world["p2"]
    for program, limit in ((p1, 8000), (p2, 6000)):
        await ok(
            srv, "PUT", f"/api/programs/{program['id']}/default-control",
            {"base": {"opModMaxLimW": limit}, "settings": {"setGradW": 200}},
        )  # fmt: skip
    # BASIC-016: two programs, two defaults, no controls: both reachable, primacy tells order
    associated = await client.get(world["edev"] + "/der/1/derp?l=5")
    assert [p.findtext(f"{SEP}primacy") for p in associated.xml()] == ["1", "10"]
    for program, limit in ((p1, "8000"), (p2, "6000")):
        default = await client.get(program["href"] + "/dderc")
        assert default.find("s:DERControlBase/s:opModMaxLimW") == limit
    # BASIC-019: two back-to-back controls in one program: neither supersedes the other
    now = await server_now(srv)
    (first,) = await ok(
        srv, "POST", f"/api/programs/{p1['id']}/controls", control(now + 10, 100, opModMaxLimW=1)
    )
    (second,) = await ok(
        srv, "POST", f"/api/programs/{p1['id']}/controls", control(now + 110, 100, opModMaxLimW=2)
    )
    listing = dict(statuses(await client.get(p1["href"] + "/derc?l=10")))
    assert listing == {first["mrid"]: "0", second["mrid"]: "0"}
    # BASIC-025: an independent mode in the higher-priority program: no potentiallySuperseded
    (independent,) = await ok(
        srv, "POST", f"/api/programs/{p2['id']}/controls", control(now + 10, 100, opModConnect=True)
    )
    assert (await client.get(first["href"])).find(
        "s:EventStatus/s:potentiallySuperseded"
    ) == "false"
    # BASIC-018: default -> event -> next event -> default
    actives = []
    for step in (11, 100, 100):
        await ok(srv, "PUT", "/api/clock", {"advance": step})
        active = await client.get(p1["href"] + "/actderc?l=5")
        actives.append([c.findtext(f"{SEP}mRID") for c in active.xml()])
    assert actives == [[first["mrid"]], [second["mrid"]], []]
    # BASIC-026 (after start): the independent control ran alongside, untouched
    assert (await client.get(independent["href"])).find("s:EventStatus/s:currentStatus") == "1"
    assert (await client.get(p1["href"] + "/dderc")).find("s:setGradW") == "200"


async def test_a_control_drops_only_the_programs_it_can_change(srv: Running) -> None:
    """Invalidation per program (issue 8): publishing in one program keeps every unrelated
    program's cached renderings; a higher-priority program reaching the same devices drops
    the lower one's (its controls may supersede them)."""
    world = await topology(srv, srv.pki.device_a)
    other_device = srv.pki.device_b
    await register(srv, other_device)
    other = await ok(srv, "POST", "/api/groups", {"description": "feeder 9-1", "level": "feeder"})
    await ok(srv, "PUT", f"/api/groups/{other['id']}/members/{other_device.lfdi}")
    p3 = await ok(
        srv, "POST", f"/api/groups/{other['id']}/programs", {"description": "other", "primacy": 1}
    )
    a, b = srv.client(srv.pki.device_a), srv.client(other_device)
    p1, p2 = world["p1"], world["p2"]
    for client, program in ((a, p1), (a, p2), (b, p3)):
        assert (await client.get(f"{program['href']}/derc")).status == 200
    cache = srv.server.sep2.cache

    def cached(program: dict[str, Any]) -> bool:
        return any(k[:2] == ("derc-list", program["id"]) for k in cache.entries if k)

    assert cached(p1) and cached(p2) and cached(p3)
    now = await server_now(srv)
    await ok(
        srv, "POST", f"/api/programs/{p3['id']}/controls", control(now + 100, opModConnect=True)
    )
    assert not cached(p3)
    assert cached(p1) and cached(p2)  # not every program
    await ok(
        srv, "POST", f"/api/programs/{p2['id']}/controls", control(now + 100, opModConnect=False)
    )
    assert not cached(p2) and not cached(p1)  # P2 (primacy 1) outranks P1 on the same device
    assert len(statuses(await b.get(f"{p3['href']}/derc"))) == 1
