"""The simulator's sans-IO core: which control applies, the Responses it sends (and what each
fault changes), randomizeStart, and a battery that never crosses its reserve."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from csip.conformance.sim.core import (
    FAULTS,
    ControlDoc,
    CurveDoc,
    DefaultDoc,
    DeviceCore,
    Faults,
    OemProfile,
    random_offset,
)

T0 = 1_700_000_000
LFDI = "AB" * 20


def control(
    mrid: str,
    start: int = T0 + 10,
    duration: int = 60,
    *,
    program: str = "/derp/1",
    primacy: int = 10,
    created: int = T0,
    status: int = 0,
    rr: int = 3,
    randomize: int = 0,
    **base: Any,
) -> ControlDoc:
    return ControlDoc(
        mrid=mrid,
        program=program,
        primacy=primacy,
        creation_time=created,
        start=start,
        duration=duration,
        status=status,
        base=base or {"opModMaxLimW": 5000},
        randomize_start=randomize,
        response_required=rr,
        reply_to=f"/rsps/{program.rsplit('/', 1)[1]}/rsp",
    )


def device(profile: OemProfile | None = None, faults: Faults | None = None) -> DeviceCore:
    profile = profile or OemProfile()
    if faults is not None:
        profile = replace(profile, faults=faults)
    return DeviceCore(LFDI, profile, T0)


def sent(core: DeviceCore, now: int) -> list[tuple[str, int]]:
    return [(r.subject, r.status) for r in core.step(now)]


def test_primacy_then_newest_creation_time_wins_mode_by_mode() -> None:
    core = device()
    low = control("A", program="/derp/1", primacy=20, opModMaxLimW=5000, opModConnect=True)
    high = control("B", program="/derp/2", primacy=5, opModMaxLimW=3000)
    newer = control("C", program="/derp/1", primacy=20, created=T0 + 1, opModConnect=False)
    core.update_program("/derp/1", [low, newer], None)
    core.update_program("/derp/2", [high], DefaultDoc("/derp/2", 5, "D", {"opModFixedW": 100}))
    winners = core.winners(T0 + 20)
    assert {mode: doc.mrid for mode, doc in winners.items()} == {
        "opModMaxLimW": "B",
        "opModConnect": "C",
        "opModFixedW": "D",
    }
    # before and after the events only the default applies
    assert {m: d.mrid for m, d in core.winners(T0).items()} == {"opModFixedW": "D"}
    assert {m: d.mrid for m, d in core.winners(T0 + 70).items()} == {"opModFixedW": "D"}


def test_responses_received_started_completed() -> None:
    core = device()
    core.update_program("/derp/1", [control("A")], None)
    assert sent(core, T0 + 1) == [("A", 1)]
    assert sent(core, T0 + 5) == []
    assert sent(core, T0 + 10) == [("A", 2)]
    assert sent(core, T0 + 70) == [("A", 3)]
    assert sent(core, T0 + 80) == []


def test_response_required_bits() -> None:
    core = device()
    core.update_program("/derp/1", [control("A", rr=1), control("B", rr=2, created=T0 - 1)], None)
    assert sorted(sent(core, T0 + 70)) == [("A", 1), ("B", 2), ("B", 3)]
    quiet = device()
    quiet.update_program("/derp/1", [control("A", rr=0)], None)
    assert sent(quiet, T0 + 70) == []


def test_cancelled_and_superseded() -> None:
    core = device()
    core.update_program("/derp/1", [control("A"), control("B", start=T0 + 100)], None)
    sent(core, T0 + 20)
    core.update_program("/derp/1", [control("A", status=2), control("B", status=4)], None)
    assert sorted(sent(core, T0 + 21)) == [("A", 6), ("B", 7)]
    assert core.winners(T0 + 21) == {}


def test_loses_every_mode_to_a_higher_priority_program_is_superseded() -> None:
    core = device()
    core.update_program("/derp/1", [control("A", primacy=20)], None)
    core.update_program("/derp/2", [control("B", program="/derp/2", primacy=1)], None)
    assert sorted(sent(core, T0 + 10)) == [("A", 1), ("A", 7), ("B", 1), ("B", 2)]


def test_seen_only_after_its_end_gets_no_started() -> None:
    core = device()
    core.step(T0 + 100)
    core.update_program("/derp/1", [control("A")], None, now=T0 + 100)
    assert sent(core, T0 + 101) == [("A", 1)]


def test_fault_ignores_cancellation() -> None:
    core = device(faults=FAULTS["ignores-cancel"])
    core.update_program("/derp/1", [control("A")], None)
    sent(core, T0 + 20)
    core.update_program("/derp/1", [control("A", status=2)], None)
    assert sent(core, T0 + 21) == []
    assert core.winners(T0 + 30)["opModMaxLimW"].mrid == "A"
    assert sent(core, T0 + 70) == [("A", 3)]


def test_fault_wrong_codes() -> None:
    core = device(faults=FAULTS["wrong-codes"])
    core.update_program("/derp/1", [control("A")], None)
    assert [s for _, s in (sent(core, T0 + 10) + sent(core, T0 + 70))] == [2, 3, 1]


def test_fault_foreign_lfdi() -> None:
    core = device(faults=FAULTS["foreign-lfdi"])
    core.update_program("/derp/1", [control("A")], None)
    (response,) = core.step(T0 + 1)
    assert response.lfdi != LFDI


def test_fault_posts_too_rarely() -> None:
    good, rare = device(), device(faults=FAULTS["posts-rarely"])
    assert good.post_interval(300) == 300 and rare.post_interval(300) == 1200
    assert good.telemetry_due(T0, 300) is not None
    assert good.telemetry_due(T0 + 299, 300) is None
    assert good.telemetry_due(T0 + 300, 300) is not None


def test_randomize_start_spreads_and_the_fault_ignores_it() -> None:
    offsets = {random_offset(f"dev{i}", "A", 120) for i in range(50)}
    assert len(offsets) > 10 and all(0 <= o <= 120 for o in offsets)
    assert all(-60 <= random_offset(f"d{i}", "A", -60) <= 0 for i in range(20))
    spread = device()
    spread.update_program("/derp/1", [control("A", randomize=120)], None)
    event = spread.events["A"]
    assert event.start == T0 + 10 + random_offset(LFDI, "A", 120)
    stubborn = device(faults=FAULTS["ignores-randomize"])
    stubborn.update_program("/derp/1", [control("A", randomize=120)], None)
    assert stubborn.events["A"].start == T0 + 10


def test_battery_follows_target_and_fixed_w_within_rating() -> None:
    core = device(OemProfile(rated_w=5000, capacity_wh=10000, initial_soc_pct=50))
    core.update_program(
        "/derp/1",
        [control("A", duration=3600, opModTargetW={"multiplier": 3, "value": 2})],
        None,
    )
    core.step(T0 + 10 + 1800)  # half an hour at 2 kW out
    assert abs(core.soc_wh - 4000) < 1e-6
    core.update_program(
        "/derp/2",
        [control("B", program="/derp/2", primacy=1, duration=3600, opModFixedW=-20000)],
        None,
    )
    assert core.setpoint(T0 + 1900).w == -5000  # -200 % clamped to the rating


def test_pv_volt_var_and_limits() -> None:
    curve = CurveDoc("/derp/1/dc/1", 11, ((92, 30), (98, 0), (102, 0), (108, -30)))
    assert curve.y(90) == 30 and curve.y(95) == 15 and curve.y(100) == 0 and curve.y(110) == -30
    profile = OemProfile(kind="pv", rated_w=5000, rated_var=3000, pv_available_pct=80)
    core = device(profile)
    assert core.setpoint(T0).w == 4000  # what the panels give
    core.update_program(
        "/derp/1",
        [control("A", opModVoltVar="/derp/1/dc/1", opModMaxLimW=5000)],
        None,
        {curve.href: curve},
    )
    moment = T0 + 20
    x = 100 * core.voltage(moment) / profile.nominal_v
    assert core.setpoint(moment).var == curve.y(x) / 100 * 3000
    assert core.setpoint(moment).w == 2500
    core.update_program("/derp/1", [control("A", opModFixedW=-1000)], None)
    assert core.setpoint(moment).w == 0  # PV cannot absorb


@settings(max_examples=200, deadline=None)
@given(
    soc=st.floats(0, 100),
    reserve=st.floats(0, 100),
    steps=st.lists(
        st.tuples(st.integers(-20000, 20000), st.integers(1, 7200)), min_size=1, max_size=8
    ),
)
def test_soc_never_crosses_reserve_or_capacity(
    soc: float, reserve: float, steps: list[tuple[int, int]]
) -> None:
    profile = OemProfile(capacity_wh=10000, reserve_pct=reserve, initial_soc_pct=soc)
    core = device(profile)
    start = T0
    controls = []
    for i, (watts, duration) in enumerate(steps):
        controls.append(
            control(
                f"C{i}",
                start=start,
                duration=duration,
                created=T0 + i,
                opModTargetW={"multiplier": 0, "value": watts},
            )
        )
        start += duration
    core.update_program("/derp/1", controls, None)
    floor = min(core.soc_wh, core.reserve_wh)
    moment = T0
    for _, duration in steps:
        moment += duration
        core.step(moment)
        assert core.soc_wh >= floor - 1e-6
        assert core.soc_wh <= profile.capacity_wh + 1e-6
