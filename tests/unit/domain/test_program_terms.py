"""Program terms (issue 12 item 6): which promises to customers an event would break, named
with the numbers; months and seasons in the utility's zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from csip.domain.programs import ProgramTerms, broken_terms

LA = ZoneInfo("America/Los_Angeles")


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=LA).timestamp())


def test_no_terms_break_nothing() -> None:
    start = at("2031-07-01T17:00")
    assert broken_terms(start, start + 4 * 3600, ProgramTerms(), [], start - 60, LA) == []


def test_length_and_notice() -> None:
    terms = ProgramTerms(max_event_seconds=4 * 3600, min_notice_seconds=86400)
    start = at("2031-07-01T17:00")
    now = start - 3600
    assert broken_terms(start, start + 5 * 3600, terms, [], now, LA) == [
        "max_event_seconds: 18000 s > 14400 s",
        "min_notice_seconds: 3600 s notice < 86400 s",
    ]
    assert broken_terms(start, start + 4 * 3600, terms, [], start - 86400, LA) == []


def test_events_per_month_count_local_months() -> None:
    terms = ProgramTerms(max_events_per_month=2)
    # July 31 20:00 in Los Angeles is August 1 03:00 UTC: a UTC month would not count it
    others = [at("2031-07-02T17:00"), at("2031-07-31T20:00"), at("2031-08-01T00:30")]
    start = at("2031-07-20T17:00")
    (broken,) = broken_terms(start, start + 3600, terms, others, start - 86400 * 2, LA)
    assert broken == "max_events_per_month: 3 events in 2031-07 > 2"
    august = at("2031-08-20T17:00")
    assert broken_terms(august, august + 3600, terms, others, august - 99, LA) == []


def test_a_winter_season_spans_the_new_year() -> None:
    terms = ProgramTerms(max_events_per_season=2, seasons=((5, 10), (11, 4)))
    others = [at("2031-11-15T17:00"), at("2032-02-01T17:00")]
    start = at("2032-03-01T17:00")
    (broken,) = broken_terms(start, start + 3600, terms, others, start - 86400, LA)
    assert broken == "max_events_per_season: 3 events in the season of months 11-4 from 2031 > 2"
    # the next winter is a new season
    later = at("2032-12-01T17:00")
    assert broken_terms(later, later + 3600, terms, others, later - 86400, LA) == []
    # summer events do not count against winter
    summer = at("2032-06-01T17:00")
    assert broken_terms(summer, summer + 3600, terms, others, summer - 86400, LA) == []
