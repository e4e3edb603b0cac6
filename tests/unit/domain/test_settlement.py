"""Settlement worked out by hand: baseline of the same hours on the 10 most recent non-event
weekdays, energy delivered above it, opt-outs listed with zero, short history flagged."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from csip.domain.settlement import baseline_days, settle_site

LA = ZoneInfo("America/Los_Angeles")
EVENT_DAY = date(2030, 8, 14)  # a Wednesday; the event runs 17:00-19:00 local time
EARLIER_EVENT = date(2030, 8, 7)


def at(day: date, hour: int, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=LA).timestamp())


def day_readings(day: date, w17: float, w18: float) -> list[tuple[int, float]]:
    return [(at(day, 17), w17), (at(day, 18), w18), (at(day, 19), 0.0)]


HISTORY_DAYS = [date(2030, 7, d) for d in (29, 30, 31)] + [
    date(2030, 8, d) for d in (1, 2, 5, 6, 7, 8, 9, 12, 13)
]


def history() -> list[tuple[int, float]]:
    readings = []
    for day in HISTORY_DAYS:
        if day == EARLIER_EVENT:
            readings += day_readings(day, 5000, 5000)  # an event day: never in a baseline
        elif day == date(2030, 8, 13):
            readings += day_readings(day, 2000, 1000)  # 3000 Wh
        else:
            readings += day_readings(day, 1000, 500)  # 1500 Wh
    return readings


EVENT = [(at(EVENT_DAY, 17), 3000.0), (at(EVENT_DAY, 17, 30), 4000.0), (at(EVENT_DAY, 18), 2000.0)]
EVENT_WINDOW = (at(EVENT_DAY, 17), at(EVENT_DAY, 19))


def test_baseline_days_skip_weekends_event_days_and_stop_at_ten() -> None:
    days = baseline_days(EVENT_DAY, [EARLIER_EVENT], date(2030, 7, 1))
    assert len(days) == 10
    assert days[0] == date(2030, 8, 13) and days[-1] == date(2030, 7, 30)
    assert EARLIER_EVENT not in days and date(2030, 8, 10) not in days  # a Saturday


def test_energy_above_baseline_matches_the_hand_computation() -> None:
    site = settle_site(7, [*history(), *EVENT], *EVENT_WINDOW, [EARLIER_EVENT], LA)
    # delivered: 3000 W x 0.5 h + 4000 W x 0.5 h + 2000 W x 1 h = 5500 Wh
    assert site.delivered_wh == pytest.approx(5500)
    # baseline: 10 days (Jul 30 .. Aug 13 without Aug 7): 9 x 1500 Wh + 3000 Wh = 16500 / 10
    assert site.days_used == 10 and site.baseline_wh == pytest.approx(1650)
    assert site.above_baseline_wh == pytest.approx(3850)
    assert not site.short_history


def test_short_history_is_flagged_and_an_opt_out_is_listed_with_zero() -> None:
    recent = [r for r in history() if r[0] >= at(date(2030, 8, 12), 0)]
    site = settle_site(8, [*recent, *EVENT], *EVENT_WINDOW, [EARLIER_EVENT], LA)
    # two days (Aug 12: 1500 Wh, Aug 13: 3000 Wh): baseline 2250 Wh, 5500 - 2250 = 3250 Wh
    assert site.days_used == 2 and site.short_history
    assert site.above_baseline_wh == pytest.approx(3250)
    out = settle_site(9, [*history(), *EVENT], *EVENT_WINDOW, [EARLIER_EVENT], LA, opted_out=True)
    assert out.above_baseline_wh == 0 and out.delivered_wh == 0 and not out.short_history
