"""The Time resource's DST and offset values (IEEE 2030.5 §10.3, CORE-005)."""

from __future__ import annotations

from datetime import UTC, datetime

from csip.domain.timeinfo import time_info


def epoch(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_los_angeles_in_summer_and_winter() -> None:
    summer = time_info("America/Los_Angeles", epoch(2026, 7, 1, 12))
    assert summer.tz_offset == -28800 and summer.dst_offset == 3600
    assert summer.dst_start_time == epoch(2026, 3, 8, 10)  # 02:00 PST
    assert summer.dst_end_time == epoch(2026, 11, 1, 9)  # 02:00 PDT
    assert summer.local_time == summer.current_time - 25200
    winter = time_info("America/Los_Angeles", epoch(2026, 12, 1, 12))
    assert winter.local_time == winter.current_time - 28800


def test_southern_hemisphere_and_zones_without_dst() -> None:
    sydney = time_info("Australia/Sydney", epoch(2026, 1, 15))
    assert sydney.tz_offset == 36000 and sydney.dst_offset == 3600
    assert sydney.dst_start_time > sydney.dst_end_time  # DST spans the new year
    assert sydney.local_time == sydney.current_time + 39600
    kolkata = time_info("Asia/Kolkata", epoch(2026, 6, 1))
    assert (kolkata.dst_offset, kolkata.dst_start_time, kolkata.dst_end_time) == (0, 0, 0)
    assert kolkata.local_time - kolkata.current_time == 19800


def test_quality_says_when_the_clock_was_moved() -> None:
    assert time_info("UTC", 0).quality == 4
    assert time_info("UTC", 0, coordinated=False).quality == 7
