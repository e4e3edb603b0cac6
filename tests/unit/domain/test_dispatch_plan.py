"""The program engine's planner: one event, every enrolled group's 2030.5 schedule.

Properties (hypothesis): the controls of one event are back to back wherever its intervals
are, never overlap, cover exactly the mapped intervals still to come, and every power value is
written exactly (value * 10^multiplier == watts asked, value an Int16). Examples: the mapping
table of the README, targeting, and payloads that cannot be converted.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csip.domain.dispatch import RESPONSE_REQUIRED, active_power, plan
from csip.domain.programs import (
    Enrollment,
    Event,
    Interval,
    Payload,
    PayloadDescriptor,
    Program,
)
from csip.errors import InvalidValues

T0 = 1_900_000_000
KW = (
    PayloadDescriptor("DISPATCH_SETPOINT", "KW"),
    PayloadDescriptor("EXPORT_CAPACITY_LIMIT", "KW"),
)
PROGRAM = Program("p1", "peak", simple_levels={2: {"opModMaxLimW": 5000}})
GROUPS = (Enrollment(1, "feeder-7", 11), Enrollment(2, "feeder-8", 12))


def event(*intervals: Interval, targets: frozenset[str] = frozenset()) -> Event:
    return Event("e1", "p1", "evening peak", tuple(intervals), targets, KW)


def setpoint(index: int, kw: float, start: int = T0, duration: int = 3600) -> Interval:
    payload = Payload("DISPATCH_SETPOINT", (kw,))
    return Interval(index, start + index * duration, duration, (payload,))


def test_two_intervals_become_two_contiguous_controls_for_every_untargeted_group() -> None:
    plans = plan(event(setpoint(0, 2.5), setpoint(1, 40.0)), PROGRAM, GROUPS, "csip", T0 - 60)
    assert [p.enrollment.group_id for p in plans] == [1, 2]
    first, second = plans[0].controls
    assert first.base == {"opModTargetW": {"multiplier": 0, "value": 2500}}
    assert second.base == {"opModTargetW": {"multiplier": 1, "value": 4000}}  # 40 kW > Int16
    assert (first.start, first.end, second.start, second.end) == (
        T0,
        T0 + 3600,
        T0 + 3600,
        T0 + 7200,
    )
    assert first.response_required == RESPONSE_REQUIRED
    assert plans[0].unmapped == ()


def test_a_targeted_event_reaches_only_the_groups_it_names() -> None:
    targeted = event(setpoint(0, 1.0), targets=frozenset({"feeder-8", "some-ven"}))
    plans = plan(targeted, PROGRAM, GROUPS, "csip", T0)
    assert [p.enrollment.target for p in plans] == ["feeder-8"]


def test_equal_consecutive_intervals_merge_into_one_control() -> None:
    plans = plan(event(setpoint(0, 3), setpoint(1, 3), setpoint(2, 1)), PROGRAM, GROUPS, "csip", T0)
    controls = plans[0].controls
    assert [(c.start, c.duration, c.interval_ids) for c in controls] == [
        (T0, 7200, (0, 1)),
        (T0 + 7200, 3600, (2,)),
    ]
    assert controls[0].description == "evening peak #0-1"


def test_intervals_already_over_are_not_planned() -> None:
    plans = plan(event(setpoint(0, 1), setpoint(1, 2)), PROGRAM, GROUPS, "csip", T0 + 3600)
    assert [c.interval_ids for c in plans[0].controls] == [(1,)]


def test_export_limit_is_a_csip_aus_mode_and_said_unmapped_in_the_csip_profile() -> None:
    limit = Interval(0, T0, 1800, (Payload("EXPORT_CAPACITY_LIMIT", (1.5,)),))
    aus = plan(event(limit), PROGRAM, GROUPS, "csip-aus", T0)[0]
    assert aus.controls[0].base == {"opModExpLimW": {"multiplier": 0, "value": 1500}}
    csip = plan(event(limit), PROGRAM, GROUPS, "csip", T0)[0]
    assert csip.controls == ()
    assert [(u.payload_type, u.reason) for u in csip.unmapped] == [
        ("EXPORT_CAPACITY_LIMIT", "opModExpLimW exists only in the csip-aus profile")
    ]


def test_price_reaches_vens_only_and_simple_uses_the_programs_table() -> None:
    interval = Interval(0, T0, 3600, (Payload("PRICE", (0.42,)), Payload("SIMPLE", (2,))))
    result = plan(event(interval), PROGRAM, GROUPS, "csip", T0)[0]
    assert result.controls[0].base == {"opModMaxLimW": 5000}
    assert [u.payload_type for u in result.unmapped] == ["PRICE"]
    level3 = Interval(0, T0, 3600, (Payload("SIMPLE", (3,)),))
    result = plan(event(level3), PROGRAM, GROUPS, "csip", T0)[0]
    assert result.controls == ()
    assert result.unmapped[0].payload_type == "SIMPLE 3"


def test_alerts_and_program_notices_become_text_messages() -> None:
    program = Program("p1", "peak", notice_before="Peak event at 5 pm", notice_after="Thanks")
    alert = Interval(0, T0, 3600, (Payload("ALERT_GRID_EMERGENCY", ("Grid emergency",)),))
    result = plan(event(alert), program, GROUPS, "csip", T0 - 7200)[0]
    assert result.controls == () and result.unmapped == ()
    assert [(m.text, m.priority, m.start) for m in result.messages] == [
        ("Grid emergency", 3, T0),
        ("Peak event at 5 pm", 1, T0 - 3600),
        ("Thanks", 1, T0 + 3600),
    ]


@pytest.mark.parametrize(
    ("interval", "descriptors", "names"),
    [
        (setpoint(0, 1.23456), KW, "interval 0 payload DISPATCH_SETPOINT"),
        (setpoint(0, 2.0), (), "units missing"),
        (Interval(0, T0, 60, (Payload("DISPATCH_SETPOINT", ("high",)),)), KW, "must be a number"),
        (Interval(0, T0, 60, (Payload("SIMPLE", (7,)),)), KW, "payload SIMPLE"),
        (Interval(0, T0, 60, (Payload("DISPATCH_SETPOINT", (1,)),), 7200), KW, "randomizeStart"),
    ],
)
def test_payloads_that_cannot_be_converted_are_refused_naming_the_payload(
    interval: Interval, descriptors: tuple[PayloadDescriptor, ...], names: str
) -> None:
    bad = Event("e1", "p1", "x", (interval,), frozenset(), descriptors)
    with pytest.raises(InvalidValues, match=names):
        plan(bad, PROGRAM, GROUPS, "csip", T0)


@given(watts=st.decimals(min_value=-327_670_000_000, max_value=327_670_000_000, places=3))
def test_power_is_exact_or_refused(watts: Decimal) -> None:
    try:
        power = active_power(watts, "x")
    except InvalidValues:
        return
    assert Decimal(power["value"]).scaleb(power["multiplier"]) == watts
    assert -(2**15) <= power["value"] < 2**15 and -9 <= power["multiplier"] <= 9


@given(
    values=st.lists(st.integers(0, 40), min_size=1, max_size=24),
    duration=st.integers(60, 4 * 3600),
    offset=st.integers(-48 * 3600, 48 * 3600),
)
def test_schedules_are_contiguous_and_cover_every_mapped_interval_to_come(
    values: list[int], duration: int, offset: int
) -> None:
    intervals = [setpoint(i, v / 10, duration=duration) for i, v in enumerate(values)]
    now = T0 + offset
    (first, *_) = plan(event(*intervals), PROGRAM, GROUPS, "csip", now)
    controls = first.controls
    for a, b in itertools.pairwise(controls):
        assert a.end == b.start  # back to back: no gap, no overlap
        assert a.base != b.base  # equal neighbours were merged
    to_come = [i for i in intervals if i.end > now]
    covered = [i for c in controls for i in c.interval_ids]
    assert covered == [i.id for i in to_come]
    if controls:
        assert controls[0].start == to_come[0].start and controls[-1].end == to_come[-1].end
