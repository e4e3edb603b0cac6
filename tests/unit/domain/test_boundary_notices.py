"""When a DERControlList subscriber hears of a control with no write (issue 10 item 7): the
pure scheduling rule services/boundaries.py sleeps on and tells."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from csip.domain.der import (
    Control,
    due_notices,
    latest_end,
    next_notice,
    notice_moments,
    untold_notices,
)


def control(
    ident: int,
    start: int,
    duration: int = 100,
    *,
    created: int = 0,
    program: int = 1,
    randomize_start: int | None = None,
    randomize_duration: int | None = None,
    cancelled_at: int | None = None,
) -> Control:
    return Control(
        ident,
        f"{ident:032X}",
        program,
        "",
        created,
        start,
        duration,
        {"opModMaxLimW": 1},
        randomize_start=randomize_start,
        randomize_duration=randomize_duration,
        cancelled_at=cancelled_at,
    )


def test_start_and_end_are_told() -> None:
    assert notice_moments(control(1, start=100)) == (100, 200)


def test_randomization_moves_the_end_to_the_latest_end() -> None:
    # the nominal end (200) changes nothing a device reads: it stays active until 230
    event = control(1, start=100, randomize_start=10, randomize_duration=20)
    assert notice_moments(event) == (100, 230)
    # negative randomization only moves a device earlier: the end stays
    assert notice_moments(control(2, start=100, randomize_start=-30)) == (100, 200)


def test_what_its_own_write_told_is_not_told_again() -> None:
    assert notice_moments(control(1, start=100, created=100)) == (200,)  # starts at creation
    assert notice_moments(control(2, start=50, created=100)) == (150,)  # already running
    assert notice_moments(control(3, start=0, duration=50, created=100)) == ()  # history


def test_a_cancelled_control_does_not_start_but_still_leaves_the_lists() -> None:
    assert notice_moments(control(1, start=100, cancelled_at=60)) == (200,)
    assert notice_moments(control(2, start=100, cancelled_at=150)) == (100, 200)


def test_untold_groups_by_program_after_a_moment_and_skips_what_was_told() -> None:
    controls = [
        control(1, start=100, program=1),
        control(2, start=200, program=1),  # its start is the first one's end: one moment
        control(3, start=150, program=2),
    ]
    assert untold_notices(controls, 0) == {1: [100, 200, 300], 2: [150, 250]}
    assert untold_notices(controls, 150) == {1: [200, 300], 2: [250]}
    assert untold_notices(controls, 0, {(1, 100), (2, 150)}) == {1: [200, 300], 2: [250]}


def test_due_is_what_the_clock_reached_and_the_scheduler_sleeps_until_the_next() -> None:
    pending = {1: [100, 200, 300], 2: [150, 250], 3: []}
    assert next_notice(pending) == 100
    assert due_notices(pending, 99) == {}
    # a clock moved far ahead tells each program once, with every moment it passed
    assert due_notices(pending, 260) == {1: [100, 200], 2: [150, 250]}
    assert next_notice({}) is None


@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(-100, 100),
    st.integers(-100, 100),
    st.one_of(st.none(), st.integers(0, 3000)),
    st.integers(0, 3000),
)
def test_every_moment_is_after_creation_and_ends_at_the_latest_end(
    start: int, duration: int, rs: int, rd: int, cancelled: int | None, created: int
) -> None:
    event = control(
        1,
        start,
        duration,
        created=created,
        randomize_start=rs,
        randomize_duration=rd,
        cancelled_at=cancelled,
    )
    moments = notice_moments(event)
    assert list(moments) == sorted(set(moments))
    assert all(m > created for m in moments)
    assert max(moments, default=latest_end(event)) == latest_end(event)
    assert latest_end(event) in moments or latest_end(event) <= created
