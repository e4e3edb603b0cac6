"""What an event's reportDescriptors ask of csip, and which readings measure a device."""

from __future__ import annotations

from csip.domain.answers import Sample
from csip.domain.programs import Event, Interval
from csip.domain.report_requests import (
    RawReading,
    descendants,
    in_window,
    next_boundary,
    report_request,
    samples,
)

T0 = 1_900_000_000
EVENT = Event("e", "p", "peak", (Interval(0, T0, 600, ()), Interval(1, T0 + 600, 600, ())))


def test_descriptors_ask_narrow_and_aggregate() -> None:
    assert report_request(None) is None and report_request([]) is None
    plain = report_request([{"payloadType": "USAGE"}])
    assert plain is not None and plain.covers("anyone") and not plain.aggregate
    narrowed = report_request(
        [{"payloadType": "DEMAND", "targets": ["north"]}, {"payloadType": "X", "aggregate": True}]
    )
    assert narrowed is not None and narrowed.aggregate
    assert narrowed.covers("north") and not narrowed.covers("south") and not narrowed.covers(None)


def test_boundaries_are_interval_starts_and_the_end() -> None:
    assert next_boundary(EVENT, T0 - 1) == T0
    assert next_boundary(EVENT, T0) == T0 + 600
    assert next_boundary(EVENT, T0 + 600) == T0 + 1200
    assert next_boundary(EVENT, T0 + 1200) is None
    assert not in_window(EVENT, T0 - 1) and in_window(EVENT, T0)
    assert in_window(EVENT, T0 + 1200 + 3600) and not in_window(EVENT, T0 + 1200 + 3601)


def test_a_device_is_measured_once() -> None:
    def r(device: int, role: int, uom: int, phase: int | None, value: int, **kw: int) -> RawReading:
        return RawReading(device, role, uom, phase, kw.get("qualifier"), value, 0, T0)

    found = samples(
        [
            r(1, 0x49, 38, 224, 3000),  # device 1: its DER mirror, three-phase total
            r(1, 0x01, 38, 0, 9000),  # its site meter: not counted (household load)
            r(1, 0x49, 38, 224, 9999, qualifier=8),  # a maximum: not the measured value
            r(2, 0x01, 38, 128, 100),  # device 2: per phase only, summed
            r(2, 0x01, 38, 64, 200),
            r(2, 0x01, 0, None, 55),  # its state of charge, 55 %
        ]
    )
    assert sorted(found, key=lambda s: (s.device_id, s.watts is None)) == [
        Sample(1, T0, watts=3000.0),
        Sample(2, T0, watts=300.0),
        Sample(2, T0, soc_percent=55.0),
    ]


def test_a_group_holds_the_devices_of_its_subgroups() -> None:
    parents = {1: None, 2: 1, 3: 2, 4: None}
    assert descendants(parents, [1, 4]) == {1: {1, 2, 3}, 4: {4}}
