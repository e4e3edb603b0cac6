"""The 2030.5 Time resource's values for a zone and an instant (IEEE 2030.5 §10.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class TimeInfo:
    current_time: int
    dst_start_time: int
    dst_end_time: int
    dst_offset: int
    local_time: int
    quality: int
    tz_offset: int


def _offset(zone: ZoneInfo, epoch: int) -> int:
    delta = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _find_change(zone: ZoneInfo, low: int, high: int) -> int:
    """The first second in (low, high] whose UTC offset differs from low's."""
    before = _offset(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


@lru_cache(maxsize=64)
def dst_rules(zone_name: str, year: int) -> tuple[int, int, int, int]:
    """(standard offset, dst offset, dst start, dst end) for a zone's calendar year.

    A zone without DST this year answers dstOffset 0 and start == end == 0.
    """
    zone = ZoneInfo(zone_name)
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    changes: list[int] = []
    day = 86400
    cursor = start
    while cursor < end:
        nxt = min(cursor + day, end)
        if _offset(zone, cursor) != _offset(zone, nxt):
            changes.append(_find_change(zone, cursor, nxt))
        cursor = nxt
    offsets = {_offset(zone, start), _offset(zone, end - 1)} | {_offset(zone, c) for c in changes}
    standard = min(offsets)
    if len(changes) < 2:
        return standard, 0, 0, 0
    dst_offset = max(offsets) - standard
    into_dst = [c for c in changes if _offset(zone, c) > standard]
    out_of_dst = [c for c in changes if _offset(zone, c) == standard]
    return standard, dst_offset, into_dst[0], out_of_dst[0]


def time_info(zone_name: str, now: int, *, coordinated: bool = True) -> TimeInfo:
    """Values for /tm. quality 4 (from a level 3 source, the host's NTP) unless the server
    clock was moved by a test or harness, when it is 7 (intentionally uncoordinated)."""
    year = datetime.fromtimestamp(now, UTC).year
    standard, dst_offset, dst_start, dst_end = dst_rules(zone_name, year)
    in_dst = dst_offset != 0 and _offset(ZoneInfo(zone_name), now) != standard
    local = now + standard + (dst_offset if in_dst else 0)
    return TimeInfo(
        current_time=now,
        dst_start_time=dst_start,
        dst_end_time=dst_end,
        dst_offset=dst_offset,
        local_time=local,
        quality=4 if coordinated else 7,
        tz_offset=standard,
    )
