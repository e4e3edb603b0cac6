"""The compact per-device capacity inputs (domain/fleet.py CapacityInputs) say what DerFacts
says: the same latest state of charge, usable energy, limits, reserve and reason for not
counting a device, for any facts (hypothesis). The fleet service keeps these in memory and
sums them, so a difference here would be a capacity figure no device explains."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from csip.domain.fleet import (
    NO_SOC,
    STALE,
    CapacityInputs,
    DerFacts,
    capacity_inputs,
    capacity_of,
    fleet_capacity,
    forecast_socs,
    forecast_starts,
    reserve_percent,
    unavailable_reason,
)

NOW = 21_990 * 86_400 + 10 * 3600 + 1800

watts = st.one_of(st.none(), st.just(0.0), st.floats(-10.0, 10_000))
times = st.one_of(st.none(), st.integers(NOW - 3000, NOW + 60))
percent = st.one_of(st.none(), st.floats(0, 100))
profiles = st.one_of(
    st.none(),
    st.lists(st.one_of(st.just(math.nan), st.floats(-8000, 8000)), min_size=24, max_size=24),
)
facts = st.builds(
    DerFacts,
    device_id=st.integers(1, 10**6),
    rtg_max_w=watts,
    rtg_max_wh=st.one_of(st.none(), st.just(0.0), st.floats(1, 30_000)),
    rtg_max_charge_rate_w=watts,
    rtg_max_discharge_rate_w=watts,
    set_max_w=watts,
    set_max_wh=st.one_of(st.none(), st.just(0.0), st.floats(1, 30_000)),
    set_max_charge_rate_w=watts,
    set_max_discharge_rate_w=watts,
    state_of_charge=percent,
    status_at=times,
    soc=percent,
    soc_at_reading=times,
    reserve_percent=percent,
    site_reserve_percent=percent,
    post_rate=st.integers(1, 900),
    profile=profiles,
)


def reason(device: CapacityInputs, now: int) -> str | None:
    """What capacity_of flags the device with at `now`."""
    if device.stale_after is None:
        return NO_SOC
    if now > device.stale_after:
        return STALE
    return device.problem


@given(facts=facts, floor=st.floats(0, 60), late=st.integers(0, 2000))
def test_inputs_say_what_the_facts_say(facts: DerFacts, floor: float, late: int) -> None:
    device = capacity_inputs(facts)
    assert device.device_id == facts.device_id
    assert (device.soc, device.soc_at) == (facts.soc_percent, facts.soc_at)
    assert device.usable_wh == facts.usable_wh
    assert device.max_discharge_w == facts.max_discharge_w
    assert device.max_charge_w == facts.max_charge_w
    own = device.own_reserve
    assert max(floor, own if own is not None else floor) == reserve_percent(facts, floor)
    for now in (NOW, NOW + late):
        assert reason(device, now) == unavailable_reason(facts, now)


@given(fleet=st.lists(facts, max_size=20, unique_by=lambda f: f.device_id))
def test_a_cache_of_forecast_socs_gives_the_same_capacity(fleet: list[DerFacts]) -> None:
    """The service hands capacity_of its own memo of forecast_socs: same answer, and the
    memo is asked only for devices that are counted and have a profile."""
    devices = [capacity_inputs(f) for f in fleet]
    asked: list[int] = []

    def memo(device: CapacityInputs, starts: list[int]) -> list[float]:
        asked.append(device.device_id)
        assert starts == forecast_starts(NOW)
        return forecast_socs(device, starts)

    plain = fleet_capacity(fleet, NOW, program_floor=20)
    cached = capacity_of(devices, NOW, program_floor=20, socs=memo)
    assert cached == plain
    assert set(asked) <= {d.device_id for d in devices if d.profile is not None}
