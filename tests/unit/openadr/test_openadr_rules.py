"""The pure OpenADR rules: privacy, shown targets, durations, event ends, topic names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from csip.openadr import rules
from csip.openadr.rules import Obj, Principal, VenView


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_privacy_by_targets_and_ownership() -> None:
    view = VenView("c1", frozenset({"v1"}), frozenset({"t1"}))
    assert rules.visible(Obj(rules.PROGRAM, "p"), view)  # untargeted: everyone
    assert rules.visible(Obj(rules.PROGRAM, "p", ["t1", "t2"]), view)
    assert not rules.visible(Obj(rules.PROGRAM, "p", ["t2"]), view)
    hidden_program = Obj(rules.PROGRAM, "p", ["t2"])
    assert not rules.visible(Obj(rules.EVENT, "e"), view, hidden_program)
    assert rules.visible(Obj(rules.REPORT, "r", client_id="c1"), view)
    assert not rules.visible(Obj(rules.REPORT, "r", client_id="c2"), view)
    assert rules.visible(Obj(rules.RESOURCE, "x", ven_id="v1", client_id="other"), view)
    assert rules.visible(Obj(rules.VEN, "v9", client_id="c2"), None)  # a BL sees all
    assert rules.shown_targets(Obj(rules.EVENT, "e", ["t1", "t2"]), view) == ["t1"]
    assert rules.shown_targets(Obj(rules.EVENT, "e", ["t1", "t2"]), None) == ["t1", "t2"]
    assert rules.query_targets_match(["a"], []) and not rules.query_targets_match([], ["a"])
    # a VEN's query names count only where it was granted them: no probing of others' targets
    granted = frozenset({"t1"})
    assert rules.query_targets_match(["t1", "t2"], ["t1"], granted)
    assert not rules.query_targets_match(["t1", "t2"], ["t2"], granted)
    assert not rules.query_targets_match(["t1", "t2"], ["unused"], granted)
    assert rules.query_targets_match(["t1", "t2"], ["t2", "t1"], granted)
    assert rules.query_targets_match(["t1", "t2"], ["t2"], None)  # a BL


def test_read_all_covers_the_narrow_read_scopes() -> None:
    bl = Principal("b", "bl", frozenset({"read_all"}))
    assert bl.has("read_targets") and bl.has("read_ven_objects") and not bl.has("write_events")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1H", 3600), ("P1D", 86400), ("P2W", 14 * 86400), ("PT1.5S", 1.5), ("-PT1M", -60)],
)
def test_durations(text: str, seconds: float) -> None:
    assert rules.parse_duration(text) == seconds


def test_bad_and_infinite_values() -> None:
    assert rules.parse_duration("P9999Y") == rules.INFINITE
    assert rules.parse_duration("1 hour") is None
    assert rules.parse_datetime("2026-01-01") is None
    assert rules.is_datetime("2026-01-01T00:00:00.5+02:00")


def test_event_end_from_intervals_and_defaults() -> None:
    start = "2030-01-01T00:00:00Z"
    two_hours = {
        "intervalPeriod": {"start": start, "duration": "PT1H"},
        "intervals": [{"id": 0}, {"id": 1}],
    }
    assert rules.event_end(two_hours) == ts("2030-01-01T02:00:00")
    own = {"intervals": [{"id": 0, "intervalPeriod": {"start": start, "duration": "PT30M"}}]}
    assert rules.event_end(own) == ts("2030-01-01T00:30:00")
    assert rules.event_end({"intervalPeriod": {"start": start}, "duration": "P1D"}) == ts(
        "2030-01-02T00:00:00"
    )
    assert rules.event_end({}) is None
    assert rules.is_active({}, 0)  # unknown end: still active
    assert not rules.is_active(two_hours, ts("2030-01-01T03:00:00"))


def test_topic_names() -> None:
    event = Obj(rules.EVENT, "e1", program_id="p1")
    assert rules.bl_topic_names("x", event, "UPDATE") == [
        "x/events/UPDATE",
        "x/programs/p1/events/UPDATE",
    ]
    assert rules.ven_topic_name("x", "v1", event, "DELETE") == "x/vens/v1/events/DELETE"
    assert rules.program_topics("x", "p1").as_json() == {
        "UPDATE": "x/programs/p1/UPDATE",
        "DELETE": "x/programs/p1/DELETE",
        "ALL": "x/programs/p1/+",
    }
    assert rules.ven_topic_name("x", "v1", Obj(rules.VEN, "v1"), "UPDATE") is None
