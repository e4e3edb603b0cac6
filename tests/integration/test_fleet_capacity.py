"""Typed DER facts and fleet capacity through the real faces (issue 12 items 1 and 5): devices
PUT DERCapability, DERSettings, DERStatus and DERAvailability and mirror W and state-of-charge
readings over mutual TLS; the admin API shows the facts with their ages and the capacity above
reserve now and hour by hour, by group (the groups below included), aggregator and fleet, as
JSON and CSV, on SQLite and PostgreSQL. Every number is worked out here by hand."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import pytest

from csip.domain.fleet import STALE
from csip.pki.identity import sfdi_from_lfdi

from helpers import end_device_xml, register
from support import BACKENDS, Running

pytestmark = BACKENDS

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'
H = 527_777  # an epoch hour: 17:00 UTC
NOW = H * 3600 + 1800  # 17:30
PEN = "0000A4F1"


def power(name: str, value: int, multiplier: int) -> str:
    return f"<{name}><multiplier>{multiplier}</multiplier><value>{value}</value></{name}>"


def capability(*quantities: str) -> str:
    return (
        f"<DERCapability {SEP}><modesSupported>00500040</modesSupported>"
        + "".join(quantities)
        + "<type>83</type></DERCapability>"
    )


def status(soc: int) -> str:
    return (
        f"<DERStatus {SEP}>"
        "<operationalModeStatus><dateTime>1</dateTime><value>2</value></operationalModeStatus>"
        "<readingTime>1</readingTime>"
        f"<stateOfChargeStatus><dateTime>1</dateTime><value>{soc}</value></stateOfChargeStatus>"
        "<storageModeStatus><dateTime>1</dateTime><value>1</value></storageModeStatus>"
        "</DERStatus>"
    )


#: Device A: 13.5 kWh rated, 12 kWh usable as set; discharge limited to 4 kW by its setting,
#: charge to 3.5 kW; its own reserve 25 %.
A_CAPABILITY = capability(
    power("rtgMaxChargeRateW", 50, 2),
    power("rtgMaxDischargeRateW", 5, 3),
    power("rtgMaxW", 5, 3),
    power("rtgMaxWh", 135, 2),
)
A_SETTINGS = (
    f"<DERSettings {SEP}><setGradW>1000</setGradW>"
    + power("setMaxChargeRateW", 35, 2)
    + power("setMaxDischargeRateW", 40, 2)
    + power("setMaxW", 48, 2)
    + power("setMaxWh", 120, 2)
    + "<updatedTime>1</updatedTime></DERSettings>"
)
A_AVAILABILITY = (
    f"<DERAvailability {SEP}><availabilityDuration>7200</availabilityDuration>"
    "<readingTime>1</readingTime><reserveChargePercent>1000</reserveChargePercent>"
    "<reservePercent>2500</reservePercent>" + power("statWAvail", 42, 2) + "</DERAvailability>"
)


def mrid(n: int) -> str:
    return f"{n:024X}{PEN}"


def mup_xml(lfdi: str) -> str:
    """A DER MirrorUsagePoint declaring W (uom 38) and state of charge (uom 0, hundredths)."""
    w = (
        f"<MirrorMeterReading><mRID>{mrid(1)}</mRID><ReadingType><dataQualifier>2"
        "</dataQualifier><kind>37</kind><phase>0</phase><powerOfTenMultiplier>0"
        "</powerOfTenMultiplier><uom>38</uom></ReadingType></MirrorMeterReading>"
    )
    soc = (
        f"<MirrorMeterReading><mRID>{mrid(2)}</mRID><ReadingType><kind>0</kind>"
        "<powerOfTenMultiplier>-2</powerOfTenMultiplier><uom>0</uom></ReadingType>"
        "</MirrorMeterReading>"
    )
    return (
        f"<MirrorUsagePoint {SEP}><mRID>{mrid(1000)}</mRID><roleFlags>0049</roleFlags>"
        f"<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI>{w}{soc}<postRate>60</postRate></MirrorUsagePoint>"
    )


def readings(n: int, *values: tuple[int, int]) -> str:
    items = "".join(
        f"<Reading><timePeriod><duration>60</duration><start>{start}</start></timePeriod>"
        f"<value>{value}</value></Reading>"
        for start, value in values
    )
    return (
        f"<MirrorMeterReading><mRID>{mrid(n)}</mRID><MirrorReadingSet><mRID>{mrid(100 + n)}"
        f"</mRID><timePeriod><duration>60</duration><start>{values[0][0]}</start></timePeriod>"
        f"{items}</MirrorReadingSet></MirrorMeterReading>"
    )


async def ok(srv: Running, method: str, path: str, body: Any = None) -> Any:
    status_code, data = await srv.admin(method, path, body)
    assert status_code in (200, 201, 204), (path, status_code, data)
    return data


async def put_all(client: Any, href: str, documents: dict[str, str]) -> None:
    for part, xml in documents.items():
        reply = await client.put(f"{href}/der/1/{part}", xml)
        assert reply.status in (201, 204), (part, reply.body)


def timed(holder: dict[str, Any], name: str, at: int, now: int | None = None) -> dict[str, Any]:
    """The part without its time and age, once they are checked: posted at `at` (or within
    the few seconds the server's clock ran on while the test went), age counted from now."""
    part = dict(holder[name])
    posted, age = part.pop("at"), part.pop("age")
    assert at <= posted <= at + 30, (name, posted)
    assert age == (now if now is not None else holder["now"]) - posted
    return part


def kwh(points: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(p["energy_kwh"], p["power_kw"]) for p in points]


async def test_facts_and_capacity_from_what_devices_post(srv: Running) -> None:
    await ok(srv, "PUT", "/api/clock", {"now": NOW})
    a, b = srv.pki.device_a, srv.pki.device_b

    # ---- device A: its four documents, then a MirrorUsagePoint and readings -------------
    href_a = await register(srv, a)
    client_a = srv.client(a)
    docs = {"dercap": A_CAPABILITY, "derg": A_SETTINGS, "ders": status(6000)}
    await put_all(client_a, href_a, {**docs, "dera": A_AVAILABILITY})
    created = await client_a.post("/mup", mup_xml(a.lfdi))
    assert created.status == 201, created.body
    mup = created.headers["Location"]
    await ok(srv, "PUT", "/api/clock", {"advance": 60})
    # history: 2 kW out at 15:00-16:00, 1 kW in at 16:00-17:00; now 1.5 kW out, 58 %
    batch = (
        f'<MirrorMeterReadingList {SEP} all="2" results="2">'
        + readings(1, ((H - 2) * 3600 + 600, 2000), ((H - 1) * 3600 + 600, -1000), (NOW, 1500))
        + readings(2, (NOW, 5800))
        + "</MirrorMeterReadingList>"
    )
    posted = await client_a.post(mup, batch)
    assert posted.status == 201, posted.body

    facts = await ok(srv, "GET", f"/api/end-devices/{a.lfdi}/facts")
    assert timed(facts, "DERCapability", NOW) == {
        "rtgMaxW": 5000.0,
        "rtgMaxWh": 13500.0,
        "rtgMaxChargeRateW": 5000.0,
        "rtgMaxDischargeRateW": 5000.0,
    }
    assert timed(facts, "DERSettings", NOW) == {
        "setMaxW": 4800.0,
        "setMaxWh": 12000.0,
        "setMaxChargeRateW": 3500.0,
        "setMaxDischargeRateW": 4000.0,
    }
    assert timed(facts, "DERStatus", NOW) == {
        "stateOfChargeStatus": 60.0,
        "storageModeStatus": 1,
        "operationalModeStatus": 2,
    }
    assert timed(facts, "DERAvailability", NOW) == {
        "reservePercent": 25.0,
        "reserveChargePercent": 10.0,
        "statWAvail": 4200.0,
        "availabilityDuration": 7200,
    }
    # a reading's time is the end of its period (start + 60 s)
    assert timed(facts["readings"], "W", NOW + 60, facts["now"]) == {"value": 1500.0}
    assert timed(facts["readings"], "soc", NOW + 60, facts["now"]) == {"value": 58.0}
    # the newest state of charge is the reading; its postRate (60 s) says when it goes stale
    assert (facts["state_of_charge"], facts["post_rate"], facts["stale"]) == (58.0, 60, False)
    assert (facts["usable_wh"], facts["max_discharge_w"], facts["max_charge_w"]) == (
        12000.0,
        4000.0,
        3500.0,
    )
    hourly = facts["hour_of_day_w"]
    assert (hourly[15], hourly[16]) == (2000.0, -1000.0)
    assert [h for i, h in enumerate(hourly) if i not in (15, 16)] == [None] * 22
    # (58 - 25) % of 12 kWh = 3960 Wh above its reserve; 3960 W for an hour (< 4 kW)
    assert facts["capacity"] == {
        "reserve_percent": 25.0,
        "energy_wh": pytest.approx(3960),
        "power_w": pytest.approx(3960),
        "duration": 3600,
        "unavailable": None,
    }

    # ---- device B: ratings and state of charge only -----------------------------------
    href_b = await register(srv, b)
    client_b = srv.client(b)
    b_capability = capability(power("rtgMaxW", 3, 3), power("rtgMaxWh", 10, 3))
    await put_all(client_b, href_b, {"dercap": b_capability, "ders": status(9000)})

    # ---- groups: B in the feeder, A in a transformer below it --------------------------
    feeder = await ok(srv, "POST", "/api/groups", {"description": "feeder"})
    transformer = await ok(
        srv, "POST", "/api/groups", {"description": "transformer", "parent": feeder["id"]}
    )
    await ok(srv, "PUT", f"/api/groups/{feeder['id']}/members/{b.lfdi}")
    await ok(srv, "PUT", f"/api/groups/{transformer['id']}/members/{a.lfdi}")

    below = await ok(srv, "GET", f"/api/capacity?group={transformer['id']}&floor=20")
    assert (below["devices"], below["available"], below["scope"]) == (
        1,
        1,
        {"group": transformer["id"]},
    )
    assert kwh([below["now"]]) == [(3.96, 3.96)]
    assert [p["at"] for p in below["forecast"]] == [(H + 1 + k) * 3600 for k in range(24)]
    # tomorrow 15:00-16:00 it drains 2 kWh (16.67 % of 12 kWh), 16:00-17:00 charges 1 kWh:
    # 41.33 % at 16:00 -> 1.96 kWh above 25 %; 49.67 % at 17:00 -> 2.96 kWh
    assert kwh(below["forecast"]) == [(3.96, 3.96)] * 22 + [(1.96, 1.96), (2.96, 2.96)]

    # the feeder holds B and, through the transformer, A: B gives (90 - 20) % of 10 kWh,
    # 3 kW at most (its rtgMaxW)
    feeder_cap = await ok(srv, "GET", f"/api/capacity?group={feeder['id']}&floor=20")
    assert feeder_cap["devices"] == 2
    assert kwh([feeder_cap["now"]]) == [(10.96, 6.96)]
    assert kwh(feeder_cap["forecast"][22:]) == [(8.96, 4.96), (9.96, 5.96)]

    # ---- a per-site reserve above the device's own ------------------------------------
    reserved = await ok(srv, "PUT", f"/api/end-devices/{a.lfdi}/reserve", {"reserve_percent": 30})
    assert reserved["site_reserve_percent"] == 30.0
    assert reserved["capacity"]["reserve_percent"] == 30.0
    below = await ok(srv, "GET", f"/api/capacity?group={transformer['id']}&floor=20")
    assert kwh([below["now"]]) == [(3.36, 3.36)]  # (58 - 30) % of 12 kWh
    assert kwh(below["forecast"][22:]) == [(1.36, 1.36), (2.36, 2.36)]
    # a program floor above both wins
    high = await ok(srv, "GET", f"/api/capacity?group={transformer['id']}&floor=50")
    assert kwh([high["now"]]) == [(0.96, 0.96)]  # (58 - 50) % of 12 kWh

    # ---- CSV: now and the 24 hours ---------------------------------------------------
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{srv.admin_base}/api/capacity?group={transformer['id']}&floor=20",
            headers={"Authorization": f"Bearer {srv.admin_token}", "Accept": "text/csv"},
        ) as response,
    ):
        assert response.status == 200 and response.content_type == "text/csv"
        lines = (await response.text()).splitlines()
    assert lines[0] == "kind,at,energy_kwh,power_kw,devices"
    kind, at, *rest = lines[1].split(",")
    assert (kind, rest) == ("now", ["3.36", "3.36", "1"]) and NOW + 60 <= int(at) < NOW + 120
    assert lines[2] == f"forecast,{(H + 1) * 3600},3.36,3.36,1"
    assert lines[-1] == f"forecast,{(H + 24) * 3600},2.36,2.36,1"
    assert len(lines) == 26

    # ---- an aggregator's devices -------------------------------------------------------
    agg = srv.pki.aggregator
    await ok(srv, "POST", "/api/aggregators", {"name": "fleet-agg"})
    await ok(srv, "PUT", f"/api/aggregators/fleet-agg/certificates/{agg.lfdi}", {})
    client_agg = srv.client(agg)
    lfdi_c = secrets.token_hex(20).upper()
    edev = await client_agg.post("/edev", end_device_xml(lfdi_c, sfdi_from_lfdi(lfdi_c)))
    assert edev.status == 201
    c_capability = capability(power("rtgMaxW", 2, 3), power("rtgMaxWh", 5, 3))
    await put_all(
        client_agg, edev.headers["Location"], {"dercap": c_capability, "ders": status(5000)}
    )
    managed = await ok(srv, "GET", "/api/capacity?aggregator=fleet-agg&floor=20")
    assert (managed["devices"], managed["scope"]) == (1, {"aggregator": "fleet-agg"})
    assert kwh([managed["now"]]) == [(1.5, 1.5)]  # (50 - 20) % of 5 kWh
    everyone = await ok(srv, "GET", "/api/capacity?floor=20")
    assert (everyone["devices"], everyone["scope"]) == (3, {"all": True})
    assert kwh([everyone["now"]]) == [(11.86, 7.86)]

    # ---- A goes quiet: 200 s after its last state of charge (> 2 x 60 s) ---------------
    await ok(srv, "PUT", "/api/clock", {"advance": 200})
    quiet = await ok(srv, "GET", f"/api/capacity?group={feeder['id']}&floor=20")
    assert (quiet["devices"], quiet["available"]) == (2, 1)
    assert quiet["unavailable"] == {"count": 1, "devices": [{"lfdi": a.lfdi, "reason": STALE}]}
    assert kwh([quiet["now"]]) == [(7.0, 3.0)]  # B alone
    assert (await ok(srv, "GET", f"/api/end-devices/{a.lfdi}/facts"))["stale"] is True

    # ---- what is refused -------------------------------------------------------------
    both = await srv.admin("GET", f"/api/capacity?group={feeder['id']}&aggregator=fleet-agg")
    assert both[0] == 400
    assert (await srv.admin("GET", "/api/capacity?group=999999"))[0] == 404
    assert (await srv.admin("GET", "/api/capacity?floor=101"))[0] == 400
    assert (await srv.admin("PUT", f"/api/end-devices/{a.lfdi}/reserve", {"reserve_percent": -1}))[
        0
    ] == 400
    document = await ok(srv, "GET", "/openapi.json")
    names = {p["name"] for p in document["paths"]["/api/capacity"]["get"]["parameters"]}
    assert {"group", "aggregator", "program", "floor", "format"} <= names
