"""Pure rules of what devices post: complete DERSettings, settings within ratings, NMIs."""

from __future__ import annotations

from fractions import Fraction

import pytest

from csip.domain.der_device import (
    LogEvent,
    Quantity,
    log_event_order,
    missing_settings,
    nmi_checksum,
    nmi_problem,
    settings_problems,
)


def test_settings_need_set_max_w_set_grad_w_and_updated_time() -> None:
    assert missing_settings({"setGradW", "setMaxW", "updatedTime", "setMaxVA"}) == []
    assert missing_settings({"setGradW", "updatedTime"}) == ["setMaxW"]
    assert missing_settings(set()) == ["setGradW", "setMaxW", "updatedTime"]


def test_quantities_keep_their_multipliers_exactly() -> None:
    assert Quantity(5, 3).exact == 5000
    assert Quantity(48, 2).exact == 4800
    assert Quantity(15, -1).exact == Fraction(3, 2)


def test_settings_may_not_exceed_the_ratings() -> None:
    rating = {"rtgMaxW": Quantity(5, 3), "rtgMaxVA": Quantity(5000, 0)}
    assert settings_problems({"setMaxW": Quantity(50, 2)}, rating) == []  # equal is fine
    problems = settings_problems({"setMaxW": Quantity(51, 2)}, rating)
    assert len(problems) == 1 and "setMaxW" in problems[0] and "rtgMaxW" in problems[0]
    assert settings_problems({"setMaxVA": Quantity(5001, 0)}, rating) != []
    # no capability yet, or a rating the device did not state: nothing to compare with
    assert settings_problems({"setMaxW": Quantity(9, 9)}, None) == []
    assert settings_problems({"setMaxVar": Quantity(9, 9)}, rating) == []
    assert settings_problems({"setMaxW": Quantity(-1, 0)}, None) == ["setMaxW must not be negative"]


# Checksums derived by hand with the AEMO rule (ASCII values; from the right, every second
# one doubled starting with the right-most; digits summed; 10 - sum mod 10):
#   2001985732: 100,51,110,53,112,57,98,48,96,50 -> 1+6+2+8+4+12+17+12+15+5 = 82 -> 8
#   QAAAVZZZZZ: 180,90,180,90,180,86,130,65,130,81 -> 9*5+14+4+11+4+9 = 87 -> 3
#   NCCCC00000: 96,48,96,48,96,67,134,67,134,78 -> 15+12+15+12+15+13+8+13+8+15 = 126 -> 4
@pytest.mark.parametrize(
    ("nmi", "checksum"), [("2001985732", 8), ("QAAAVZZZZZ", 3), ("NCCCC00000", 4)]
)
def test_nmi_checksum_matches_hand_derived_examples(nmi: str, checksum: int) -> None:
    assert nmi_checksum(nmi) == checksum
    assert nmi_problem(nmi) is None
    assert nmi_problem(nmi + str(checksum)) is None
    assert nmi_problem(nmi + str((checksum + 1) % 10)) is not None


@pytest.mark.parametrize(
    "bad",
    ["", "200198573", "200198573288", "2001 85732", "nccc000000", "QAAAOZZZZZ", "QAAAIZZZZZ"],
)
def test_nmi_shape_is_checked(bad: str) -> None:
    assert nmi_problem(bad) is not None


def test_log_events_sort_newest_first_then_by_log_event_id() -> None:
    def event(id_: int, created: int, log_id: int) -> LogEvent:
        return LogEvent(id_, 1, created, log_id, 0, 11, 2, 40732, 0)

    events = [event(1, 100, 1), event(2, 300, 2), event(3, 200, 3), event(4, 300, 4)]
    ordered = sorted(events, key=log_event_order, reverse=True)
    assert [e.id for e in ordered] == [4, 2, 3, 1]
    assert events[0].href() == "/edev/1/lel/1"
