"""The fleet's capacity inputs are kept in memory between capacity queries (services/fleet.py
FleetFacts): an unchanged fleet is not read again, and whatever a device posts (a DERStatus
PUT, new readings), the utility sets (a site reserve, a postRate) or removes is in the very
next answer. SQLite, no sockets, every number by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csip.app import App
from csip.domain.devices import Principal, PrincipalKind
from csip.domain.fleet import STALE
from csip.pki.identity import sfdi_from_lfdi
from csip.services.admin import PreRegistration

from support import Pki, built_app

A = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
B = "1C3F45AB31EDFE5B67E343E5E4562E31984E23E7"
NS = 'xmlns="urn:ieee:std:2030.5:ns"'
NOW = 527_777 * 3600 + 1800


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, NOW) as built:
        yield built


def device(lfdi: str) -> Principal:
    return Principal(lfdi, sfdi_from_lfdi(lfdi), PrincipalKind.DEVICE)


async def put(app: App, lfdi: str, part: str, xml: str) -> None:
    found = await app.sep2.store.get_end_device_by_lfdi(lfdi)
    assert found is not None
    await app.der_device.put_der_document(device(lfdi), found.id, 1, part, xml.encode())


def capability(kw: int, kwh: int) -> str:
    return (
        f"<DERCapability {NS}><modesSupported>00500040</modesSupported>"
        f"<rtgMaxW><multiplier>3</multiplier><value>{kw}</value></rtgMaxW>"
        f"<rtgMaxWh><multiplier>3</multiplier><value>{kwh}</value></rtgMaxWh>"
        "<type>83</type></DERCapability>"
    )


def status(soc_percent: int) -> str:
    return (
        f"<DERStatus {NS}><readingTime>1</readingTime><stateOfChargeStatus><dateTime>1"
        f"</dateTime><value>{soc_percent * 100}</value></stateOfChargeStatus></DERStatus>"
    )


async def soc_reading(app: App, lfdi: str, soc_percent: int, at: int) -> None:
    """A MirrorUsagePoint with a state-of-charge MirrorMeterReading (hundredths), one reading."""
    mrid = lfdi[:24] + "00000001"
    body = (
        f"<MirrorUsagePoint {NS}><mRID>{lfdi[:24]}00000002</mRID><roleFlags>0049</roleFlags>"
        "<serviceCategoryKind>0</serviceCategoryKind><status>1</status>"
        f"<deviceLFDI>{lfdi}</deviceLFDI><MirrorMeterReading><mRID>{mrid}</mRID>"
        "<ReadingType><kind>0</kind><powerOfTenMultiplier>-2</powerOfTenMultiplier><uom>0</uom>"
        "</ReadingType></MirrorMeterReading></MirrorUsagePoint>"
    )
    mup = (await app.telemetry.post_mup(device(lfdi), body.encode())).mup
    reading = (
        f"<MirrorMeterReading {NS}><mRID>{mrid}</mRID><Reading><timePeriod><duration>60"
        f"</duration><start>{at}</start></timePeriod><value>{soc_percent * 100}</value>"
        "</Reading></MirrorMeterReading>"
    )
    await app.telemetry.post_readings(device(lfdi), mup.id, reading.encode())


async def energy_kwh(app: App) -> float:
    report = await app.fleet.capacity(program_floor=20)
    return round(report.capacity.now.energy_wh / 1000, 6)


async def test_an_unchanged_fleet_is_not_read_again_and_every_change_shows_at_once(
    app: App,
) -> None:
    await app.admin.preregister([PreRegistration(x, sfdi_from_lfdi(x)) for x in (A, B)])
    await put(app, A, "dercap", capability(5, 10))
    await put(app, A, "ders", status(60))
    await put(app, B, "dercap", capability(3, 20))
    await put(app, B, "ders", status(50))
    cache = app.fleet.cache
    # A: (60 - 20) % of 10 kWh = 4 kWh; B: (50 - 20) % of 20 kWh = 6 kWh
    assert await energy_kwh(app) == 10.0
    read = cache.rows_read
    assert read == 2
    assert await energy_kwh(app) == 10.0
    assert cache.rows_read == read  # nothing changed: nothing read

    await put(app, A, "ders", status(80))  # a DERStatus PUT: (80 - 20) % of 10 kWh = 6 kWh
    assert await energy_kwh(app) == 12.0
    assert cache.rows_read == read + 1  # only A was read again

    # a newer state of charge reading: (30 - 20) % of 20 kWh = 2 kWh for B
    await soc_reading(app, B, 30, NOW)
    assert await energy_kwh(app) == 8.0

    # the utility's reserve for A's site: (80 - 50) % of 10 kWh = 3 kWh
    await app.fleet.set_site_reserve(A, 50)
    assert await energy_kwh(app) == 5.0

    # a postRate for B of 10 s: its reading (60 s old by then) is stale after 20 s
    await app.admin.preregister([PreRegistration(B, sfdi_from_lfdi(B), post_rate=10)])
    app.clock.set(NOW + 120)
    report = await app.fleet.capacity(program_floor=20)
    b = await app.sep2.store.get_end_device_by_lfdi(B)
    assert b is not None and report.capacity.unavailable == {b.id: STALE}
    # A's DERStatus (time of its PUT) is 120 s old: fresh under the 300 s default postRate
    assert round(report.capacity.now.energy_wh / 1000, 6) == 3.0

    # a device removed is gone from the fleet at once
    await app.admin.delete_end_device(B)
    assert (await app.fleet.capacity(program_floor=20)).capacity.devices == 1
