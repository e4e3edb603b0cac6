"""Event rules of the DER function set (IEEE 2030.5 §12.1 events; CSIP IG §6), pure."""

from __future__ import annotations

from typing import Any

import pytest

from csip.domain.der import (
    Control,
    Curve,
    Status,
    check_base,
    event_statuses,
    is_active,
    next_boundary,
)
from csip.errors import InvalidValues


def control(ident: int, created: int, start: int, duration: int = 100, **base: Any) -> Control:
    return Control(
        ident, f"{ident:032X}", 1, "", created, start, duration, base or {"opModMaxLimW": 1}
    )


def test_scheduled_then_active_then_out_of_the_active_list() -> None:
    event = control(1, created=0, start=100)
    assert event_statuses([event], 50)[1].current is Status.SCHEDULED
    active = event_statuses([event], 100)[1]
    assert (active.current, active.date_time) == (Status.ACTIVE, 100)
    assert is_active(event, active, 150)
    assert not is_active(event, event_statuses([event], 200)[1], 200)


def test_newer_control_covering_every_mode_supersedes() -> None:
    old = control(1, 0, 100, opModMaxLimW=5, opModConnect=True)
    new = control(2, 10, 150, opModMaxLimW=4, opModConnect=True, rampTms=5)
    statuses = event_statuses([old, new], 20)
    assert (statuses[1].current, statuses[1].date_time) == (Status.SUPERSEDED, 10)
    assert statuses[2].current is Status.SCHEDULED


def test_partial_mode_overlap_only_marks_potentially_superseded() -> None:
    old = control(1, 0, 100, opModMaxLimW=5, opModConnect=True)
    new = control(2, 10, 150, opModMaxLimW=4)
    status = event_statuses([old, new], 20)[1]
    assert status.current is Status.SCHEDULED
    assert (status.potentially_superseded, status.potentially_superseded_time) == (True, 10)


def test_independent_modes_and_disjoint_times_never_supersede() -> None:
    base = control(1, 0, 100, opModMaxLimW=5)
    independent = control(2, 10, 100, opModConnect=True)
    later = control(3, 20, 200, opModMaxLimW=4)  # starts when base ends
    statuses = event_statuses([base, independent, later], 30)
    assert {s.current for s in statuses.values()} == {Status.SCHEDULED}
    assert not any(s.potentially_superseded for s in statuses.values())


def test_supersession_is_final_and_cancel_wins() -> None:
    old = control(1, 0, 100)
    new = Control(2, "2" * 32, 1, "", 10, 100, 100, {"opModMaxLimW": 2}, cancelled_at=30)
    statuses = event_statuses([old, new], 40)
    assert statuses[1].current is Status.SUPERSEDED
    assert (statuses[2].current, statuses[2].date_time) == (Status.CANCELLED, 30)
    randomized = Control(
        3, "3" * 32, 1, "", 0, 100, 100, {"opModMaxLimW": 1}, 60, None, None, 30, True
    )
    assert event_statuses([randomized], 40)[3].current is Status.CANCELLED_RANDOMIZED


def test_higher_priority_program_marks_potentially_superseded() -> None:
    mine = control(1, 0, 100, opModMaxLimW=5)
    theirs = control(9, 5, 50, opModMaxLimW=3)
    status = event_statuses([mine], 10, higher_priority=[theirs])[1]
    assert status.potentially_superseded and status.current is Status.SCHEDULED
    unrelated = control(8, 5, 50, opModConnect=False)
    assert not event_statuses([mine], 10, higher_priority=[unrelated])[1].potentially_superseded


def test_next_boundary_is_the_next_start_end_or_cancellation() -> None:
    events = [control(1, 0, 100), control(2, 0, 150, 10)]
    assert next_boundary(events, 0) == 100
    assert next_boundary(events, 100) == 150
    assert next_boundary(events, 155) == 160
    assert next_boundary(events, 200) is None


def test_check_base() -> None:
    curve = Curve(4, "4" * 32, 1, 11, ((1, 2),), 0, 0, 3, 0)
    check_base(
        {"opModVoltVar": {"curve": 4}, "opModTargetW": {"value": 1, "multiplier": 3}},
        "csip",
        {4: curve},
    )
    for base, message in (
        ({"opModFly": 1}, "unknown"),
        ({"opModTargetW": {"value": 1}}, "multiplier"),
        ({"opModVoltWatt": {"curve": 4}}, "curveType 12"),
        ({"opModVoltVar": {"curve": 5}}, "no curve"),
        ({"opModExpLimW": {"value": 1, "multiplier": 0}}, "csip-aus"),
        ({"opModMaxLimW": True}, "integer"),
    ):
        with pytest.raises(InvalidValues, match=message):
            check_base(base, "csip", {4: curve})
    check_base({"opModExpLimW": {"value": 1, "multiplier": 0}}, "csip-aus", {})
