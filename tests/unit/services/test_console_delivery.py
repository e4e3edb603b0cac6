"""The capacity page's requested vs delivered on the demo's data (issue 13 item 1): the
battery event asks each feeder for kW, interval by interval; delivered is what the feeders'
devices metered, each device's mean in the interval summed, read back here from the very
MirrorUsagePoints the demo devices posted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from csip.app import App
from csip.services import demo
from csip.services.demo import BATTERY_KW, FEEDERS, demo_lfdi, is_battery, load_into

from support import Pki, built_app

T0 = 2_000_000_000  # 03:33:20 UTC: the event's third hour is in progress
NS = "{urn:ieee:std:2030.5:ns}"
DEVICES = 8


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0, dispatch_watch=False) as built:
        yield built


def _posted_watts(index: int) -> list[tuple[int, float]]:
    """(start, W) of the readings demo device `index` posted, parsed from its document."""
    batteries = sum(1 for i in range(DEVICES) if is_battery(i))
    soc_now = 35 + (index * 37) % 60
    xml = demo._mirror(demo_lfdi(index), index, T0, is_battery(index), soc_now, batteries)
    root = etree.fromstring(xml)
    meter = next(
        m for m in root.iter(NS + "MirrorMeterReading") if m.findtext(NS + "description") == "W"
    )
    return [
        (int(r.findtext(f"{NS}timePeriod/{NS}start") or 0), float(r.findtext(NS + "value") or 0))
        for r in meter.iter(NS + "Reading")
    ]


async def test_the_battery_event_shows_requested_beside_delivered(app: App) -> None:
    await load_into(app, DEVICES)
    timelines = {t.name: t for t in await app.console.timelines()}
    (event,) = timelines["demo-battery"].events
    delivery = await app.console.delivery(event.id)
    assert delivery.devices == DEVICES
    assert delivery.groups == [name for name, _ in FEEDERS]
    # requested: each feeder is asked the interval's kW (per-device dispatch)
    assert [d.requested_kw for d in delivery.intervals] == [kw * 2.0 for kw in BATTERY_KW]
    hour = T0 - T0 % 3600
    assert [d.start for d in delivery.intervals] == [hour - 7200, hour - 3600, hour]
    # delivered: per interval, Σ over devices of the mean of what each posted in it, up to now
    posted = {i: _posted_watts(i) for i in range(DEVICES)}
    for d in delivery.intervals:
        means = []
        for readings in posted.values():
            inside = [w for at, w in readings if d.start <= at < min(d.end, T0 + 1)]
            if inside:
                means.append(sum(inside) / len(inside))
        assert d.delivered_kw == pytest.approx(sum(means) / 1000, abs=1e-6)
    # the demo's batteries give 85-95 % of their share, at night (no PV): so does the fleet
    assert all(
        0.85 <= (d.delivered_kw or 0) / (d.requested_kw or 1) <= 0.95 for d in delivery.intervals
    )


async def test_a_limit_event_has_no_requested_power(app: App) -> None:
    await load_into(app, DEVICES)
    timelines = {t.name: t for t in await app.console.timelines()}
    peak = next(e for e in timelines["demo-peak"].events if e.name == "peak now")
    delivery = await app.console.delivery(peak.id)
    assert [d.requested_kw for d in delivery.intervals] == [None, None]
    assert [d.asked for d in delivery.intervals] == ["SIMPLE 1", "SIMPLE 1"]
    assert delivery.intervals[0].delivered_kw is not None  # begun: devices metered it
    assert delivery.intervals[1].delivered_kw is None  # not begun
