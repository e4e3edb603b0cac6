"""Reserve-aware capacity and allocation (customer battery program rules, domain/fleet.py).

Properties (hypothesis): an allocation never gives a device more than it can deliver, gives
the group exactly min(target, what all can give), and a device following its setpoint for the
interval never ends below its reserve.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csip.domain.fleet import (
    DerFacts,
    Fact,
    allocate,
    charge_setpoint_w,
    deliverable_w,
    energy_above_reserve_wh,
    reserve_percent,
)

NOW = 1_900_000_000


def battery(
    device_id: int, soc: float, wh: float, w: float, reserve: float | None = None
) -> DerFacts:
    facts = {
        "rtgMaxWh": Fact(wh, NOW - 86400),
        "rtgMaxDischargeRateW": Fact(w, NOW - 86400),
        "rtgMaxChargeRateW": Fact(w, NOW - 86400),
        "soc": Fact(soc, NOW - 60),
    }
    if reserve is not None:
        facts["reservePercent"] = Fact(reserve, NOW - 60)
    return DerFacts.of(device_id, facts)


def test_reserve_is_the_largest_of_floor_override_and_device() -> None:
    device = battery(1, 80, 13_500, 5000, reserve=25)
    assert reserve_percent(device, program_floor=20) == 25
    assert reserve_percent(device, program_floor=20, site_override=40) == 40
    assert reserve_percent(battery(2, 80, 13_500, 5000), program_floor=20) == 20


def test_deliverable_is_the_smaller_of_rate_and_energy_above_reserve_over_the_interval() -> None:
    device = battery(1, 60, 10_000, 5000)
    assert energy_above_reserve_wh(device, 20) == pytest.approx(4000)
    assert deliverable_w(device, 20, 3600, NOW) == 4000  # energy-bound for one hour
    assert deliverable_w(device, 20, 1800, NOW) == 5000  # rate-bound for half an hour
    assert deliverable_w(device, 70, 3600, NOW) == 0  # already below its reserve


def test_a_stale_state_of_charge_makes_a_device_unavailable() -> None:
    device = battery(1, 90, 10_000, 5000)
    assert deliverable_w(device, 20, 3600, NOW + 2 * device.post_rate - 60) > 0  # 600 s old
    assert deliverable_w(device, 20, 3600, NOW + 2 * device.post_rate - 59) == 0


def test_allocation_is_pro_rata_and_reports_the_shortfall() -> None:
    allocation = allocate(6000, {1: 4000.0, 2: 2000.0, 3: 0.0})
    assert allocation.setpoints == {1: 4000, 2: 2000, 3: 0}
    half = allocate(3000, {1: 4000.0, 2: 2000.0})
    assert half.setpoints == {1: 2000, 2: 1000} and half.shortfall_w == 0
    short = allocate(10_000, {1: 4000.0, 2: 2000.0})
    assert short.allocated_w == 6000 and short.shortfall_w == 4000


def test_charge_setpoint_reaches_the_asked_charge_within_limits() -> None:
    device = battery(1, 50, 10_000, 5000)
    assert charge_setpoint_w(device, 80, 20, 3600, NOW) == -3000  # 3 kWh in an hour
    assert charge_setpoint_w(device, 100, 20, 1800, NOW) == -5000  # capped by the rate
    assert charge_setpoint_w(device, 10, 30, 3600, NOW) == 2000  # down to the reserve only


@given(
    target=st.integers(0, 200_000),
    fleet=st.lists(
        st.tuples(st.floats(0, 100), st.floats(1000, 30_000), st.floats(0, 10_000)),
        min_size=1,
        max_size=40,
    ),
    floor=st.floats(0, 60),
    duration=st.integers(300, 4 * 3600),
)
def test_allocation_never_exceeds_what_devices_can_give_nor_crosses_a_reserve(
    target: int, fleet: list[tuple[float, float, float]], floor: float, duration: int
) -> None:
    devices = {i: battery(i, soc, wh, w) for i, (soc, wh, w) in enumerate(fleet)}
    can = {i: deliverable_w(d, floor, duration, NOW) for i, d in devices.items()}
    allocation = allocate(target, can)
    assert allocation.allocated_w == min(target, allocation.available_w)
    for i, setpoint in allocation.setpoints.items():
        assert 0 <= setpoint <= can[i]
        device = devices[i]
        soc, usable = device.soc_percent, device.usable_wh
        assert soc is not None and usable is not None
        soc_after = soc - setpoint * duration / 3600 / usable * 100
        assert soc_after >= min(soc, floor) - 1e-9  # never below the reserve it started above
