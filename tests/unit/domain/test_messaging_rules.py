"""The Messaging function set's pure rules: a message's status, listing and display change only
at the moments next_boundary names (the render cache keeps a rendering until then), and the
checks refuse what a device or sep.xsd would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csip.domain.messaging import (
    TextMessage,
    check_message,
    is_listed,
    is_shown,
    message_status,
    next_boundary,
)
from csip.errors import InvalidValues

T0 = 1_900_000_000


@st.composite
def messages(draw: st.DrawFn) -> TextMessage:
    start = T0 + draw(st.integers(-5000, 5000))
    duration = draw(st.integers(1, 5000))
    cancelled = draw(st.none() | st.integers(T0 - 6000, T0 + 100_000))
    return TextMessage(1, "A" * 32, 1, T0 - 6000, start, duration, "x", 1, None, cancelled)


def seen(message: TextMessage, now: int) -> tuple[object, ...]:
    status = message_status(message, now)
    return (status.current, status.date_time, is_listed(message, now), is_shown(message, now))


@given(st.lists(messages(), min_size=1, max_size=4), st.integers(T0 - 6000, T0 + 100_000))
def test_nothing_changes_before_the_next_boundary(batch: list[TextMessage], now: int) -> None:
    """A rendering kept until next_boundary is never stale."""
    boundary = next_boundary(batch, now)
    later = [now + 1, now + 997] if boundary is None else [(now + boundary) // 2, boundary - 1]
    for message in batch:
        for moment in later:
            if moment > now:
                assert seen(message, moment) == seen(message, now)
    # (a boundary where nothing changes only costs one rendering: not checked)
    assert boundary is None or boundary > now


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((T0, 60, "hi", 4, ""), "priority"),
        ((T0, 0, "hi", 1, ""), "duration"),
        ((T0, 2**32, "hi", 1, ""), "duration"),
        ((-1, 60, "hi", 1, ""), "start"),
        ((T0, 60, " \n", 1, ""), "empty"),
        ((T0, 60, "x" * 1001, 1, ""), "at most 1000"),
        ((T0, 60, "hi", 1, "y" * 21), "String20"),
        ((T0, 60, "hi\x00", 1, ""), "control"),
        ((T0, 60, "hi", 1, "\ufffe"), "control"),
    ],
)
def test_check_message_names_the_problem(args: tuple[int, int, str, int, str], says: str) -> None:
    with pytest.raises(InvalidValues, match=says):
        check_message(*args)


def test_a_plain_message_passes() -> None:
    check_message(T0, 60, "Peak event 5-8 pm\nsave power, please ☀ é", 3, "utility")
