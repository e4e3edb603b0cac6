"""Settling a whole fleet at once (domain/settlement.py FleetSettlement) gives every site the
very figures settle_site gives it (hypothesis): irregular readings, events across midnight
and across the daylight-saving changes of the zone, event days, short histories, opt-outs.
It reads only the readings of the event's clock hours (`windows`); the test hands it those,
as the store does, and settle_site everything."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from csip.domain.settlement import BASELINE_DAYS, FleetSettlement, settle_site

LA = ZoneInfo("America/Los_Angeles")
HISTORY = 30 * 86_400


def at(text: str, zone: ZoneInfo = LA) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=zone).timestamp())


#: Event starts around both 2031 changes in Los Angeles (Mar 9, Nov 2) and an ordinary week.
starts = st.sampled_from(
    [at("2031-03-10T17:00"), at("2031-03-24T23:30"), at("2031-11-03T01:15"), at("2031-07-15T17:00")]
)


def fleet_figures(
    sites: dict[int, list[tuple[int, float]]],
    start: int,
    end: int,
    days: set[date],
    zone: ZoneInfo,
    opted_out: set[int],
) -> dict[int, object]:
    since = start - HISTORY
    fleet = FleetSettlement(start, end, days, zone, since)
    for low, high in fleet.windows:
        rows = [
            (site, t, value, 0)
            for site in sorted(sites)
            for t, value in sorted(sites[site])
            if low <= t < high
        ]
        half = len(rows) // 2  # in two chunks, as a stream comes
        fleet.feed(rows[:half])
        fleet.feed(rows[half:])
        fleet.end_window()
    out: dict[int, object] = {}
    for site, readings in sites.items():
        inside = [t for t, _ in readings if since <= t < end]
        out[site] = fleet.site(site, site, min(inside, default=None), site in opted_out)
    return out


@settings(max_examples=40, deadline=None)
@given(
    start=starts,
    length=st.sampled_from([1800, 3600, 4 * 3600, 5400, 26 * 3600]),
    data=st.data(),
)
def test_a_fleet_at_once_gives_each_site_what_settle_site_gives(
    start: int, length: int, data: st.DataObject
) -> None:
    end = start + length
    event_days = set(
        data.draw(
            st.lists(
                st.sampled_from(
                    [datetime.fromtimestamp(start - k * 86_400, LA).date() for k in range(1, 12)]
                ),
                max_size=3,
            )
        )
    )
    sites: dict[int, list[tuple[int, float]]] = {}
    for site in range(1, data.draw(st.integers(1, 4)) + 1):
        first = data.draw(st.integers(start - 20 * 86_400, end))
        times = data.draw(
            st.lists(
                st.one_of(
                    st.integers(first, end + 3600),
                    # on the hour and at a few fixed minutes of the event's hours, some days back
                    st.builds(
                        lambda d, m: start - d * 86_400 + m,
                        st.integers(0, 16),
                        st.sampled_from([-1800, 0, 59, 600, 3599, 3600, 5400]),
                    ),
                ),
                max_size=60,
                unique=True,
            )
        )
        sites[site] = [(t, float(data.draw(st.integers(-5000, 5000)))) for t in times if t >= first]
    opted_out = set(data.draw(st.lists(st.sampled_from(sorted(sites)), max_size=2)))

    got = fleet_figures(sites, start, end, event_days, LA, opted_out)
    for site, readings in sites.items():
        inside = [(t, w) for t, w in readings if start - HISTORY <= t < end]
        expected = settle_site(site, inside, start, end, event_days, LA, site in opted_out)
        assert got[site] == expected, (site, sorted(inside))


def test_the_figures_of_the_hand_worked_event_hold() -> None:
    """tests/unit/services/test_settle_event.py's site A, settled as part of a fleet."""
    history = [f"2031-07-{day:02d}T17:00" for day in (1, 2, 3, 4, 7, 8, 9, 10, 11, 14)]
    readings = (
        [(at(h), 600.0) for h in history]
        + [(at("2031-06-30T17:00"), 5000.0), (at("2031-07-12T17:00"), 9000.0)]
        + [(at("2031-07-15T17:00"), 3000.0), (at("2031-07-15T17:30"), 2000.0)]
    )
    start = at("2031-07-15T17:00")
    (site,) = fleet_figures({7: readings}, start, start + 3600, set(), LA, set()).values()
    assert site == settle_site(7, readings, start, start + 3600, set(), LA)
    assert (site.delivered_wh, site.baseline_wh, site.days_used) == (2500, 600, BASELINE_DAYS)
