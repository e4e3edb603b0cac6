"""Fleet capacity above reserve, now and hour by hour (domain/fleet.py), worked out by hand,
and its properties (hypothesis): sums are sums, nothing is negative, and the power counted for
an interval never takes a device below its reserve."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csip.domain.fleet import (
    NO_ENERGY,
    NO_SOC,
    STALE,
    DerFacts,
    HourSample,
    device_capacity,
    fleet_capacity,
    hour_of_day_profile,
    soc_path,
    yesterday_error,
)

DAY = 86_400
#: 10:30 UTC on a day; the forecast's first point is 11:00.
NOW = 21_990 * DAY + 10 * 3600 + 1800
HOUR = NOW // 3600


def battery(
    device_id: int,
    soc: float | None,
    wh: float | None = 10_000,
    w: float | None = 5000,
    *,
    age: int = 60,
    reserve: float | None = None,
    profile: list[float] | None = None,
    post_rate: int = 300,
) -> DerFacts:
    return DerFacts(
        device_id,
        rtg_max_w=w,
        rtg_max_wh=wh,
        capability_at=NOW - DAY,
        soc=soc,
        soc_at_reading=None if soc is None else NOW - age,
        reserve_percent=reserve,
        availability_at=None if reserve is None else NOW - DAY,
        post_rate=post_rate,
        profile=profile,
    )


def test_capacity_now_counts_energy_and_power_above_reserve_and_flags_the_rest() -> None:
    fleet = [
        battery(1, 60, 10_000, 5000),  # (60-20)% of 10 kWh = 4 kWh; 4 kW for an hour
        battery(2, 90, 13_500, 5000, reserve=30),  # (90-30)% of 13.5 kWh = 8.1 kWh; 5 kW cap
        battery(3, 15, 10_000, 5000),  # below the floor: counted, gives nothing
        battery(4, 80, age=601),  # 601 s old > 2 x 300 s: stale
        battery(5, None),  # never said its state of charge
        battery(6, 80, wh=None),  # no energy rating
    ]
    result = fleet_capacity(fleet, NOW, program_floor=20)
    assert result.devices == 6 and result.now.devices == 3
    assert result.now.energy_wh == pytest.approx(4000 + 8100)
    assert result.now.power_w == pytest.approx(4000 + 5000)
    assert result.unavailable == {4: STALE, 5: NO_SOC, 6: NO_ENERGY}
    # held for two hours, the energy bounds the power instead: 2 kW and 4.05 kW
    two_hours = fleet_capacity(fleet, NOW, program_floor=20, duration=7200)
    assert two_hours.now.power_w == pytest.approx(2000 + 4050)
    # with no history, the state of charge stays: every hour ahead is the same as now
    assert [p.at for p in result.forecast] == [(HOUR + 1 + k) * 3600 for k in range(24)]
    assert {(p.energy_wh, p.power_w) for p in result.forecast} == {
        (result.now.energy_wh, result.now.power_w)
    }


def test_the_forecast_follows_each_device_s_hour_of_day_behaviour() -> None:
    """12 kWh usable, at 58 %, reserve 25 %. Its history: 2 kW out at 08:00-09:00 UTC, 1 kW in
    at 09:00-10:00 (charging from PV, say), nothing known for the other hours. Tomorrow 08:00
    it drains 2 kWh (16.67 %), at 09:00 it charges 1 kWh (8.33 %)."""
    profile = [math.nan] * 24
    profile[8], profile[9] = 2000.0, -1000.0
    device = DerFacts(
        1,
        set_max_wh=12_000,
        set_max_discharge_rate_w=4000,
        set_max_charge_rate_w=3500,
        settings_at=NOW - DAY,
        soc=58.0,
        soc_at_reading=NOW - 60,
        reserve_percent=25,
        availability_at=NOW - DAY,
        profile=profile,
    )
    result = fleet_capacity([device], NOW)
    by_hour = {p.at // 3600 % 24: p for p in result.forecast}
    assert by_hour[8].energy_wh == pytest.approx((58 - 25) * 120)  # 08:00: before the drain
    assert by_hour[9].energy_wh == pytest.approx((58 - 100 / 6 - 25) * 120)  # 1960 Wh
    assert by_hour[10].energy_wh == pytest.approx((58 - 100 / 6 + 100 / 12 - 25) * 120)  # 2960
    assert by_hour[9].power_w == pytest.approx(1960)  # energy-bound for the hour
    assert by_hour[7].power_w == pytest.approx(3960)


def test_behaviour_is_clipped_to_the_device_s_limits_and_to_a_full_or_empty_battery() -> None:
    profile = [-20_000.0] * 24  # "charges" at 20 kW every hour: its limit is 5 kW
    device = battery(1, 50, 10_000, 5000, profile=profile)
    path = soc_path(device, [NOW - 60 + 3600, NOW - 60 + 7200])
    assert path == [pytest.approx(100.0), 100.0]  # +50 % in an hour at 5 kW, then full


def test_profile_is_the_mean_w_per_hour_of_day_over_the_seven_days_before() -> None:
    samples = [
        HourSample(HOUR - 24, 3000.0, 2),  # yesterday this hour: 1.5 kW
        HourSample(HOUR - 48, 500.0, 1),  # the day before: 0.5 kW
        HourSample(HOUR - 1, -400.0, 4),  # the last whole hour
        HourSample(HOUR, 9999.0, 1),  # the hour in progress: left out
        HourSample(HOUR - 7 * 24 - 1, 9999.0, 1),  # more than 7 days ago: left out
    ]
    profile = hour_of_day_profile(samples, HOUR)
    assert profile is not None
    assert profile[HOUR % 24] == pytest.approx(3500 / 3)
    assert profile[(HOUR - 1) % 24] == -100.0
    assert sum(1 for v in profile if not math.isnan(v)) == 2
    assert hour_of_day_profile([HourSample(HOUR, 5.0, 1)], HOUR) is None


def test_yesterday_s_error_compares_the_midnight_forecast_with_what_devices_showed() -> None:
    """Yesterday's midnight forecast for a 10 kWh battery at 50 % with no history says 50 %
    all day; it showed 40 % at the end of 00:00-01:00 and 70 % at the end of 12:00-13:00."""
    first = (NOW // DAY - 1) * DAY // 3600
    samples = {
        1: [
            HourSample(first - 1, soc=50.0, soc_at=first * 3600 - 30),
            HourSample(first, soc=40.0, soc_at=first * 3600 + 3500),
            HourSample(first + 12, soc=70.0, soc_at=(first + 13) * 3600 - 1),
        ]
    }
    device = battery(1, 55)
    error = yesterday_error([device, battery(2, 50)], samples, NOW, program_floor=20)
    assert error.devices == 1 and error.day_start == first * 3600
    assert [(h.at, h.forecast_wh, h.actual_wh) for h in error.hours] == [
        ((first + 1) * 3600, pytest.approx(3000), pytest.approx(2000)),
        ((first + 13) * 3600, pytest.approx(3000), pytest.approx(5000)),
    ]
    assert error.mean_absolute_error_wh == pytest.approx(1500)
    assert error.mean_absolute_percent_error == pytest.approx(100 * 1500 / 3500)


devices = st.builds(
    lambda i, soc, wh, w, reserve, age, hours: battery(
        i,
        soc,
        wh,
        w,
        reserve=reserve,
        age=age,
        profile=None if hours is None else hours,
    ),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.floats(0, 100)),
    st.one_of(st.none(), st.floats(100, 30_000)),
    st.one_of(st.none(), st.floats(0, 10_000)),
    st.one_of(st.none(), st.floats(0, 100)),
    st.integers(0, 900),
    st.one_of(
        st.none(),
        st.lists(
            st.one_of(st.just(math.nan), st.floats(-10_000, 10_000)), min_size=24, max_size=24
        ),
    ),
)


@given(
    fleet=st.lists(devices, max_size=30, unique_by=lambda d: d.device_id),
    floor=st.floats(0, 60),
    duration=st.integers(300, 4 * 3600),
    split=st.integers(0, 30),
)
def test_capacity_sums_never_go_negative_and_never_cross_a_reserve(
    fleet: list[DerFacts], floor: float, duration: int, split: int
) -> None:
    result = fleet_capacity(fleet, NOW, duration=duration, program_floor=floor)
    parts = [device_capacity(d, NOW, duration, floor) for d in fleet]
    # now is the sum of each device's part; the flagged ones add nothing
    assert result.now.energy_wh == pytest.approx(sum(p.energy_wh for p in parts))
    assert result.now.power_w == pytest.approx(sum(p.power_w for p in parts))
    assert set(result.unavailable) == {p.device_id for p in parts if p.unavailable}
    assert result.now.devices + len(result.unavailable) == len(fleet)
    # two halves of the fleet add up to the whole, now and every hour ahead
    a = fleet_capacity(fleet[:split], NOW, duration=duration, program_floor=floor)
    b = fleet_capacity(fleet[split:], NOW, duration=duration, program_floor=floor)
    for whole, one, two in zip(
        (result.now, *result.forecast), (a.now, *a.forecast), (b.now, *b.forecast), strict=True
    ):
        assert whole.energy_wh == pytest.approx(one.energy_wh + two.energy_wh)
        assert whole.power_w == pytest.approx(one.power_w + two.power_w)
    limits = sum((d.max_discharge_w or 0) for d in fleet if d.device_id not in result.unavailable)
    for point in (result.now, *result.forecast):
        assert point.energy_wh >= 0 and point.power_w >= 0
        assert point.power_w <= limits + 1e-6
        # the power counted, held for the duration, never takes the fleet below its reserves
        assert point.power_w * duration / 3600 <= point.energy_wh + 1e-6
    starts = [p.at for p in result.forecast]
    for device, part in zip(fleet, parts, strict=True):
        path = soc_path(device, starts)
        assert all(math.isnan(soc) or 0 <= soc <= 100 for soc in path)
        if part.unavailable is None:  # the fleet's fast loop moves each device as soc_path
            alone = fleet_capacity([device], NOW, duration=duration, program_floor=floor)
            usable = device.usable_wh or 0.0
            expected = [max(0.0, (soc - part.reserve_percent) * usable / 100) for soc in path]
            got = [p.energy_wh for p in alone.forecast]
            assert got == pytest.approx(expected, abs=1e-6)
