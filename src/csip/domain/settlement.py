"""Settlement: the energy each site delivered during an event above its baseline.

The customer battery program pays for energy delivered above a baseline. The baseline of a
site for an event is the average, hour by hour, of the same clock hours on the 10 most recent
weekdays before the event that were not event days (fewer when history is short, and then
flagged). Energy is the site's metered export (2030.5 sign: positive W delivered), integrated
per hour from its readings. A site that opted out is listed with zero.

Pure: readings and days are passed in; the time zone is the program's (hours are local clock
hours, so a baseline follows the customer's day, not UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

BASELINE_DAYS = 10


@dataclass(frozen=True, slots=True)
class SiteSettlement:
    device_id: int
    delivered_wh: float
    baseline_wh: float
    days_used: int
    opted_out: bool = False

    @property
    def above_baseline_wh(self) -> float:
        return 0.0 if self.opted_out else max(0.0, self.delivered_wh - self.baseline_wh)

    @property
    def short_history(self) -> bool:
        return not self.opted_out and self.days_used < BASELINE_DAYS


def hourly_wh(readings: Iterable[tuple[int, float]], zone: ZoneInfo) -> dict[datetime, float]:
    """Energy per local clock hour from (time, W) readings: each reading holds until the next
    one, within its hour (a left Riemann sum of the mirrored power)."""
    ordered = sorted(readings)
    energy: dict[datetime, float] = {}
    for (at, watts), (following, _) in zip(ordered, [*ordered[1:], (None, 0.0)], strict=True):
        start = datetime.fromtimestamp(at, zone)
        hour = start.replace(minute=0, second=0, microsecond=0)
        hour_end = int((hour + timedelta(hours=1)).timestamp())
        end = hour_end if following is None else min(following, hour_end)
        energy[hour] = energy.get(hour, 0.0) + watts * (end - at) / 3600
    return energy


def baseline_days(event_day: date, event_days: Iterable[date], history_start: date) -> list[date]:
    """The 10 most recent non-event weekdays before `event_day`, not before the history."""
    excluded = set(event_days)
    days: list[date] = []
    day = event_day - timedelta(days=1)
    while len(days) < BASELINE_DAYS and day >= history_start:
        if day.weekday() < 5 and day not in excluded:
            days.append(day)
        day -= timedelta(days=1)
    return days


def settle_site(
    device_id: int,
    readings: Sequence[tuple[int, float]],
    event_start: int,
    event_end: int,
    event_days: Iterable[date],
    zone: ZoneInfo,
    opted_out: bool = False,
) -> SiteSettlement:
    """One site's delivered energy, baseline and energy above it for one event."""
    energy = hourly_wh(readings, zone)
    start = datetime.fromtimestamp(event_start, zone)
    hours = []
    moment = start.replace(minute=0, second=0, microsecond=0)
    while moment.timestamp() < event_end:
        hours.append(moment)
        moment += timedelta(hours=1)
    delivered = sum(energy.get(h, 0.0) for h in hours)
    first = min((datetime.fromtimestamp(t, zone).date() for t, _ in readings), default=start.date())
    days = baseline_days(start.date(), event_days, first)
    if days:
        per_day = [
            sum(energy.get(datetime.combine(d, h.timetz()), 0.0) for h in hours) for d in days
        ]
        baseline = sum(per_day) / len(per_day)
    else:
        baseline = 0.0
    if opted_out:
        return SiteSettlement(device_id, 0.0, baseline, len(days), opted_out=True)
    return SiteSettlement(device_id, delivered, baseline, len(days))


def program_total_wh(sites: Mapping[int, SiteSettlement]) -> float:
    return sum(s.above_baseline_wh for s in sites.values())
