"""Requested vs delivered per interval (domain/delivery.py): the figures an operator reads on
the capacity page, checked by hand."""

from __future__ import annotations

from csip.domain.answers import Sample
from csip.domain.delivery import deliveries
from csip.domain.programs import Event, Interval, Payload, PayloadDescriptor

H = 3600
T = 1_800_000_000 - 1_800_000_000 % H


def _event(*payloads: Payload, units: str | None = "KW") -> Event:
    return Event(
        "e1",
        "p1",
        "evening",
        tuple(Interval(i, T + i * H, H, (p,)) for i, p in enumerate(payloads)),
        descriptors=(PayloadDescriptor("DISPATCH_SETPOINT", units),),
    )


def test_a_per_device_program_asks_each_group_and_devices_deliver_their_mean() -> None:
    event = _event(Payload("DISPATCH_SETPOINT", (20,)), Payload("DISPATCH_SETPOINT", (30.5,)))
    samples = [
        Sample(1, T, watts=1000.0),
        Sample(1, T + 900, watts=3000.0),  # device 1's mean in interval 0: 2 kW
        Sample(2, T + 1800, watts=5000.0),  # device 2: 5 kW
        Sample(3, T, watts=9000.0),  # not a reached device
        Sample(1, T - 1, watts=7000.0),  # before the event
        Sample(1, T + H, watts=4000.0),  # interval 1, begun; device 2 posted nothing
        Sample(2, T + H + 1000, watts=1000.0),  # after now: not read
    ]
    found = deliveries(
        event,
        dispatch="per-device",
        simple_levels={},
        groups=2,
        device_ids=[1, 2],
        samples=samples,
        now=T + H + 600,
    )
    assert [(d.requested_kw, d.delivered_kw) for d in found] == [(40.0, 7.0), (61.0, 4.0)]
    assert found[0].asked == "20 kW for each of 2 group(s)"
    assert found[0].delivered_percent == 17.5


def test_a_group_program_sends_each_device_the_setpoint() -> None:
    event = _event(Payload("DISPATCH_SETPOINT", (2,)), Payload("DISPATCH_SETPOINT", (3,)))
    found = deliveries(
        event,
        dispatch="group",
        simple_levels={},
        groups=1,
        device_ids=[1, 2, 3],
        samples=[Sample(1, T, watts=-500.0)],
        now=T + 10,
    )
    # the interval not begun has no delivered figure, not a zero
    assert [(d.requested_kw, d.delivered_kw) for d in found] == [(6.0, -0.5), (9.0, None)]


def test_simple_levels_ask_for_power_only_through_a_target() -> None:
    event = _event(Payload("SIMPLE", (1,)), Payload("SIMPLE", (2,)), Payload("PRICE", (0.3,)))
    levels = {
        1: {"opModTargetW": {"multiplier": 1, "value": 150}},  # 1.5 kW each
        2: {"opModMaxLimW": 5000},  # a limit asks for no power
    }
    found = deliveries(
        event,
        dispatch="group",
        simple_levels=levels,
        groups=1,
        device_ids=[1, 2],
        samples=[],
        now=T + 3 * H,
    )
    assert [d.requested_kw for d in found] == [3.0, None, None]
    assert [d.asked for d in found[1:]] == ["SIMPLE 2", "PRICE 0.3"]
    assert all(d.delivered_kw is None for d in found)  # nobody posted readings


def test_a_setpoint_without_kw_units_is_not_read_as_power() -> None:
    event = _event(Payload("DISPATCH_SETPOINT", (20,)), units=None)
    (found,) = deliveries(
        event,
        dispatch="per-device",
        simple_levels={},
        groups=2,
        device_ids=[1],
        samples=[],
        now=T,
    )
    assert found.requested_kw is None and found.asked == "DISPATCH_SETPOINT 20"
