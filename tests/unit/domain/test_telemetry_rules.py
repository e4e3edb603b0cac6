"""Pure rules of the metering mirror: which ReadingTypes and readings csip accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from csip.domain.telemetry import (
    UNITS,
    Reading,
    ReadingType,
    UsagePointDraft,
    check_readings,
    check_usage_point,
    effective_post_rate,
    physical_value,
    reading_problems,
    reading_type_problems,
)
from csip.errors import InvalidValues


@pytest.mark.parametrize(
    ("uom", "mult"),
    [(38, 0), (38, 3), (63, 0), (29, -1), (33, -2), (72, 3), (0, -2), (61, 0), (65, -3)],
)
def test_csip_quantities_are_accepted(uom: int, mult: int) -> None:
    assert reading_type_problems(ReadingType(uom, mult, kind=37 if uom != 72 else 12)) == []


def test_v_and_hz_may_be_declared_with_kind_power_as_csip_aus_does() -> None:
    assert reading_type_problems(ReadingType(29, 0, kind=37, data_qualifier=2)) == []
    assert reading_type_problems(ReadingType(33, -2, kind=37, data_qualifier=12)) == []


@pytest.mark.parametrize(
    ("rt", "fragment"),
    [
        (ReadingType(132), "uom 132"),
        (ReadingType(38, 12), "powerOfTenMultiplier 12"),
        (ReadingType(33, 3), "powerOfTenMultiplier 3"),
        (ReadingType(0, 1), "powerOfTenMultiplier 1"),
        (ReadingType(72, kind=37), "kind 37"),
        (ReadingType(38, kind=12), "kind 12"),
        (ReadingType(38, kind=3), "kind 3"),
        (ReadingType(38, phase=7), "phase 7"),
        (ReadingType(38, flow_direction=2), "flowDirection 2"),
        (ReadingType(38, data_qualifier=1), "dataQualifier 1"),
        (ReadingType(38, accumulation_behaviour=9), "accumulationBehaviour 9"),
        (ReadingType(72, accumulation_behaviour=12), "accumulationBehaviour 12"),
        (ReadingType(38, commodity=7), "commodity 7"),
    ],
)
def test_wrong_units_multipliers_and_codes_are_named(rt: ReadingType, fragment: str) -> None:
    problems = reading_type_problems(rt)
    assert any(fragment in p for p in problems), problems


def test_values_keep_their_multiplier_exactly() -> None:
    assert physical_value(2305, -1) == Decimal("230.5")
    assert physical_value(5, 3) == Decimal(5000)
    assert format(physical_value(5002, -2), "f") == "50.02"
    assert Reading(8250, -2, 0).physical == Decimal("82.50")


def test_physical_limits_of_a_reading() -> None:
    soc = ReadingType(0, -2)
    assert reading_problems(soc, Reading(10000, -2, 0)) == []
    assert reading_problems(soc, Reading(10001, -2, 0))
    assert reading_problems(soc, Reading(-1, -2, 0))
    assert reading_problems(ReadingType(29), Reading(-230, 0, 0))
    assert reading_problems(ReadingType(38), Reading(-5000, 0, 0)) == []  # import is negative
    assert reading_problems(ReadingType(65, -2), Reading(-95, -2, 0)) == []
    assert reading_problems(ReadingType(38, 3), Reading(1, 0, 0))  # multiplier must match


def test_a_batch_is_refused_whole() -> None:
    rt = ReadingType(38)
    check_readings("M", rt, [Reading(1, 0, 10), Reading(2, 0, 20)])
    with pytest.raises(InvalidValues, match="two readings start at 10"):
        check_readings("M", rt, [Reading(1, 0, 10), Reading(2, 0, 10)])


def test_usage_point_rules() -> None:
    good = UsagePointDraft("A", "B", 0x49, 0, 1)
    check_usage_point(good)
    with pytest.raises(InvalidValues, match="electricity"):
        check_usage_point(UsagePointDraft("A", "B", 0, 1, 1))
    with pytest.raises(InvalidValues, match="status"):
        check_usage_point(UsagePointDraft("A", "B", 0, 0, 2))


def test_post_rate_device_setting_then_global_then_requested() -> None:
    assert effective_post_rate(60, 300, 120) == 60
    assert effective_post_rate(None, 300, 120) == 300
    assert effective_post_rate(None, None, 120) == 120
    assert effective_post_rate(None, None, None) is None


def test_every_unit_has_a_sane_multiplier_range() -> None:
    for unit in UNITS.values():
        assert -9 <= unit.min_multiplier <= unit.max_multiplier <= 9
