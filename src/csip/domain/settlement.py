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
    if not ordered:  # a site that sent nothing delivered nothing
        return energy
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


#: FleetSettlement's mark for a UTC quarter hour whose clock hours must be worked out per
#: reading (a zone's offset changes inside it).
VARIES = (-2, 0)


# ---- one event for a whole fleet --------------------------------------------------------------
class FleetSettlement:
    """settle_site for every site of an event at once, from readings streamed meter by meter.

    settle_site turns each reading into a local clock hour with datetime arithmetic and keeps
    every hour of a month of history; for 100,000 sites that is millions of datetimes. The
    same figures need far less: a reading only counts in its own hour, held until the next
    reading or the hour's end, so only the event's clock hours matter, on the event day and
    on the weekdays that can be baseline days. This works out those hours once (`windows`,
    the epoch ranges to read), files each reading under its hour by its UTC quarter hour (a
    dictionary lookup; every zone's offsets and changes fall on quarter hours, and a quarter
    that holds a change is worked out per reading), and adds energy in the same order and
    with the same arithmetic as settle_site, so each site's figures are the same floats.

    It holds for sites with one total-W meter; a site with several (whose readings interleave)
    is settled with settle_site. Feed it each window's rows in (meter, start) order (`feed`,
    then `end_window`), then ask `site` per device."""

    def __init__(
        self,
        event_start: int,
        event_end: int,
        event_days: Iterable[date],
        zone: ZoneInfo,
        since: int,
    ) -> None:
        self.zone = zone
        start = datetime.fromtimestamp(event_start, zone)
        self.start_date = start.date()
        hours = []
        moment = start.replace(minute=0, second=0, microsecond=0)
        while moment.timestamp() < event_end:
            hours.append(moment)
            moment += timedelta(hours=1)
        history = datetime.fromtimestamp(since, zone).date()
        #: The baseline days of a site whose readings go back to `since`, newest first; a
        #: site with a later first reading uses those on or after its first day.
        self.candidates = baseline_days(self.start_date, event_days, history)
        #: Each clock hour that counts -> its slot in a site's energy list.
        self.slots: dict[datetime, int] = {}
        self.delivered_slots = [self._slot(h) for h in hours]
        self.day_slots = {
            d: [self._slot(datetime.combine(d, h.timetz())) for h in hours] for d in self.candidates
        }
        ranges = []
        for key in self.slots:
            low = max(int(key.timestamp()), since)
            high = min(int((key + timedelta(hours=1)).timestamp()), event_end)
            if low < high:
                ranges.append((low, high))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for low, high in ranges:
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
            else:
                merged.append((low, high))
        #: The epoch ranges [low, high) whose readings settle the event: every reading of a
        #: counted hour, and every reading that ends one early (both within [since, end)).
        self.windows = merged
        #: meter -> energy (Wh) per slot.
        self.energy: dict[int, list[float]] = {}
        #: UTC quarter hour -> (slot, hour end) of every second in it; VARIES: not the same.
        self._quarters: dict[int, tuple[int, int]] = {}
        self._days: dict[int, date] = {}
        self._pending: tuple[int, int, float, int, int] | None = None

    def _slot(self, key: datetime) -> int:
        return self.slots.setdefault(key, len(self.slots))

    def _hour(self, at: int) -> tuple[int, int]:
        """The slot of the clock hour a reading at `at` falls in (-1: not counted) and that
        hour's end, as hourly_wh works them out."""
        moment = datetime.fromtimestamp(at, self.zone)
        hour = moment.replace(minute=0, second=0, microsecond=0)
        end = int((hour + timedelta(hours=1)).timestamp())
        return self.slots.get(hour, -1), end

    def _quarter(self, quarter: int) -> tuple[int, int]:
        """_hour for every second of a UTC quarter hour, or VARIES when it is not the same
        throughout (the zone's offset changes inside it)."""
        first, last = quarter * 900, quarter * 900 + 899
        zone = self.zone
        same = (
            datetime.fromtimestamp(first, zone).utcoffset()
            == datetime.fromtimestamp(last, zone).utcoffset()
        )
        found = self._hour(first)
        if not same or found != self._hour(last):
            found = VARIES
        self._quarters[quarter] = found
        return found

    def feed(self, rows: Iterable[tuple[int, int, int, int]]) -> None:
        """Readings (meter, start, value, powerOfTenMultiplier) of one window, in (meter,
        start) order; may be called once per chunk of the window's rows."""
        energy, quarters, slots = self.energy, self._quarters, len(self.slots)
        pending = self._pending
        if pending is None:
            meter, at, watts, slot, end = -1, 0, 0.0, -1, 0
            acc: list[float] = []
        else:
            meter, at, watts, slot, end = pending
            acc = energy[meter]
        for row_meter, start, value, multiplier in rows:
            if row_meter != meter:
                if slot >= 0:  # the meter's last reading holds to its hour's end
                    acc[slot] = acc[slot] + watts * (end - at) / 3600
                meter = row_meter
                found = energy.get(meter)
                if found is None:
                    found = energy[meter] = [0.0] * slots
                acc = found
            elif slot >= 0:  # held until this reading, within its hour
                until = start if start < end else end
                acc[slot] = acc[slot] + watts * (until - at) / 3600
            hour = quarters.get(start // 900)
            if hour is None:
                hour = self._quarter(start // 900)
            slot, end = hour
            if slot == -2:  # VARIES
                slot, end = self._hour(start)
            at = start
            watts = float(value) * 10.0 ** int(multiplier)
        self._pending = (meter, at, watts, slot, end) if meter != -1 else None

    def end_window(self) -> None:
        pending = self._pending
        if pending is not None:
            meter, at, watts, slot, end = pending
            if slot >= 0:
                acc = self.energy[meter]
                acc[slot] = acc[slot] + watts * (end - at) / 3600
        self._pending = None

    def _day(self, at: int) -> date:
        """The local date of `at`, kept per UTC quarter hour that lies within one date."""
        quarter = at // 900
        day = self._days.get(quarter)
        if day is None:
            day = datetime.fromtimestamp(at, self.zone).date()
            zone = self.zone
            if (
                datetime.fromtimestamp(quarter * 900, zone).date()
                == datetime.fromtimestamp(quarter * 900 + 899, zone).date()
            ):
                self._days[quarter] = day
        return day

    def site(
        self, device_id: int, meter: int | None, first: int | None, opted_out: bool = False
    ) -> SiteSettlement:
        """settle_site's figures for a site with this one meter (None: none), whose first
        reading since `since` started at `first` (None: it has none)."""
        energy = self.energy.get(meter) if meter is not None else None
        if first is None:
            days: list[date] = []
        else:
            first_day = self._day(first)
            days = [d for d in self.candidates if d >= first_day]
        if energy is None:  # no reading in any counted hour
            delivered, baseline = 0.0, 0.0
        else:
            pick = energy.__getitem__
            delivered = sum(map(pick, self.delivered_slots))
            baseline = 0.0
            if days:
                per_day = [sum(map(pick, self.day_slots[d])) for d in days]
                baseline = sum(per_day) / len(per_day)
        if opted_out:
            return SiteSettlement(device_id, 0.0, baseline, len(days), opted_out=True)
        return SiteSettlement(device_id, delivered, baseline, len(days))
