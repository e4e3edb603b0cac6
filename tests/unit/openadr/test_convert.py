"""OpenADR 3.1.0 event JSON to the domain model: interval times as the Definition resolves them."""

from __future__ import annotations

import pytest

from csip.domain.programs import Payload, PayloadDescriptor
from csip.errors import InvalidValues
from csip.openadr import convert

START = "2030-08-01T22:00:00Z"
T0 = 1911852000  # 2030-08-01T22:00:00Z


def test_intervals_follow_each_other_from_the_events_period() -> None:
    wire = {
        "id": "7",
        "programID": "3",
        "eventName": "peak",
        "targets": ["feeder-7"],
        "intervalPeriod": {"start": START, "duration": "PT1H", "randomizeStart": "PT5M"},
        "intervals": [
            {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [2.5]}]},
            {
                "id": 1,
                "intervalPeriod": {"duration": "PT30M"},
                "payloads": [{"type": "CURVE", "values": [{"x": 1, "y": 2}]}],
            },
            {"id": 2, "payloads": [{"type": "SIMPLE", "values": [1]}]},
        ],
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT",
                "units": "KW",
            }
        ],
    }
    program = {
        "payloadDescriptors": [
            {"payloadType": "DISPATCH_SETPOINT", "units": "W"},
            {"payloadType": "PRICE", "currency": "USD"},
        ]
    }
    event = convert.event(wire, program, now=0)
    assert [(i.id, i.start, i.duration, i.randomize_start) for i in event.intervals] == [
        (0, T0, 3600, 300),
        (1, T0 + 3600, 1800, 300),
        (2, T0 + 5400, 3600, 300),
    ]
    assert event.intervals[1].payloads == (Payload("CURVE", ((1.0, 2.0),)),)
    assert event.targets == frozenset({"feeder-7"}) and event.name == "peak"
    assert event.descriptors == (
        PayloadDescriptor("DISPATCH_SETPOINT", "KW"),  # the event's own wins
        PayloadDescriptor("PRICE", None, "USD"),
    )


def test_an_event_without_a_start_begins_now_and_for_ever_is_the_longest_duration() -> None:
    wire = {
        "intervalPeriod": {"duration": "P9999Y"},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}],
    }
    (interval,) = convert.event(wire, None, now=1234).intervals
    assert (interval.start, interval.duration) == (1234, 2**32 - 1)


def test_an_interval_without_any_duration_is_refused() -> None:
    wire = {"intervals": [{"id": 4, "payloads": []}]}
    with pytest.raises(InvalidValues, match="interval 4 has no duration"):
        convert.event(wire, None, now=0)
