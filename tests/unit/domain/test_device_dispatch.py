"""The per-device dispatch rules (domain.device_dispatch): shares never cross a reserve nor
exceed what a battery can give, the group gives min(target, what all can), the shortfall is
the rest; falling short is told from telemetry."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from csip.domain.device_dispatch import (
    CHARGE,
    DISCHARGE,
    SHORT_POWER,
    SHORT_SOC,
    Ask,
    Inputs,
    assess,
    charge_to,
    due_for_replan,
    plan_group,
)
from csip.domain.fleet import DerFacts, Fact

NOW = 1_000_000


def battery(d: int, soc: float, reserve: float, wh: float, w: float, stale: bool = False) -> Inputs:
    return Inputs(d, soc, NOW, 0, reserve, wh, w, w, 300, "stale" if stale else None)


devices = st.lists(
    st.tuples(
        st.floats(0, 100),
        st.floats(0, 100),
        st.floats(1000, 20_000),
        st.floats(500, 10_000),
        st.booleans(),
    ),
    min_size=1,
    max_size=20,
)


@given(devices, st.lists(st.integers(0, 200_000), min_size=1, max_size=4))
def test_no_reserve_is_crossed_and_the_shortfall_is_the_rest(
    fleet: list[tuple[float, float, float, float, bool]], targets: list[int]
) -> None:
    inputs = [battery(i, *x) for i, x in enumerate(fleet)]
    asks = [Ask(k, NOW + 3600 * k, 3600, DISCHARGE, t) for k, t in enumerate(targets)]
    plans = plan_group(asks, inputs, NOW)
    spent = {d.device_id: 0.0 for d in inputs}
    for plan in plans:
        assert plan.allocated_w == min(int(plan.target), plan.available_w)
        assert plan.shortfall_w == int(plan.target) - plan.allocated_w
        for device in inputs:
            watts = plan.setpoints[device.device_id]
            assert 0 <= watts <= plan.deliverable.get(device.device_id, 0)
            if device.unavailable is not None:
                assert watts == 0
            spent[device.device_id] += watts * (plan.end - plan.start) / 3600
    for device in inputs:
        above = max(0.0, (device.soc or 0) - device.reserve) / 100 * (device.usable_wh or 0)
        assert spent[device.device_id] <= above + 1e-6


def test_shares_are_pro_rata_to_what_each_can_give() -> None:
    a = battery(1, 80, 20, 10_000, 5000)  # 6 kWh above reserve: 5000 W for the hour
    b = battery(2, 50, 20, 5000, 3000)  # 1.5 kWh: 1500 W
    (plan,) = plan_group([Ask(0, NOW, 3600, DISCHARGE, 6000)], [a, b], NOW)
    assert dict(plan.setpoints) == {1: 4615, 2: 1385}
    assert (plan.available_w, plan.shortfall_w) == (6500, 0)


def test_a_fixed_device_keeps_its_setpoint_and_the_others_share_the_rest() -> None:
    a = battery(1, 80, 20, 10_000, 5000)
    b = battery(2, 80, 20, 10_000, 5000)
    (plan,) = plan_group(
        [Ask(0, NOW, 3600, DISCHARGE, 6000)], [a, b], NOW, fixed={1: {0: 1000}}, excluded={}
    )
    assert dict(plan.setpoints) == {1: 1000, 2: 5000}
    (plan,) = plan_group([Ask(0, NOW, 3600, DISCHARGE, 6000)], [a, b], NOW, excluded={2: "out"})
    assert dict(plan.setpoints) == {1: 5000, 2: 0} and plan.shortfall_w == 1000


def test_an_interval_under_way_is_planned_from_now() -> None:
    a = battery(1, 30, 20, 10_000, 5000)  # 1 kWh: over the half hour left, 2000 W
    (plan,) = plan_group([Ask(0, NOW - 1800, 3600, DISCHARGE, 9000)], [a], NOW)
    assert (plan.start, plan.setpoints[1]) == (NOW, 2000)


def test_charge_to_reaches_the_state_of_charge_within_limits_and_above_reserve() -> None:
    a = battery(1, 50, 20, 10_000, 3000)
    assert charge_to(a, 50, 80, 3600) == -3000  # 3 kWh in an hour: its charge limit
    assert charge_to(a, 50, 60, 3600) == -1000
    assert charge_to(a, 50, 10, 3600) == 3000  # down to its reserve, within its rating
    assert charge_to(a, 30, 10, 3600) == 1000  # 30 % -> 20 %, never 10 %
    (plan,) = plan_group([Ask(0, NOW, 3600, CHARGE, 70)], [a], NOW)
    assert plan.setpoints[1] == -2000 and plan.shortfall_w == 0


def facts(soc: float, at: int = NOW) -> DerFacts:
    return DerFacts.of(
        1,
        {
            "rtgMaxWh": Fact(10_000, at),
            "rtgMaxDischargeRateW": Fact(5000, at),
            "stateOfChargeStatus": Fact(soc, at),
        },
    )


def test_falling_short_of_power_for_two_posts() -> None:
    end = NOW + 3600
    assert assess(facts(90), 20, 4000, end, [(NOW - 60, 3000)], NOW).reason is None
    two = [(NOW - 120, 3000.0), (NOW - 60, 3100.0)]
    verdict = assess(facts(90), 20, 4000, end, two, NOW)
    assert (verdict.reason, verdict.cap_w) == (SHORT_POWER, 3100.0)
    fine = [(NOW - 120, 3000.0), (NOW - 60, 3900.0)]
    assert assess(facts(90), 20, 4000, end, fine, NOW).reason is None


def test_heading_below_the_reserve_before_the_interval_ends() -> None:
    # 25 % of 10 kWh is 500 Wh above a 20 % reserve; 4000 W for the hour left would need 4 kWh
    verdict = assess(facts(25), 20, 4000, NOW + 3600, [], NOW)
    assert verdict.reason == SHORT_SOC
    assert verdict.cap_w is not None and abs(verdict.cap_w - 500) < 1e-6
    assert assess(facts(70), 20, 4000, NOW + 3600, [], NOW).reason is None


def test_fifteen_minutes_between_re_plans() -> None:
    assert not due_for_replan(NOW, NOW + 899)
    assert due_for_replan(NOW, NOW + 900)
