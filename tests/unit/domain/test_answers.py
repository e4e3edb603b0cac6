"""Answers as report intervals: counts by latest status, group power and mean state of charge."""

from __future__ import annotations

from csip.domain.answers import Answer, Sample, group_report
from csip.domain.programs import Event, Interval, Payload

T0 = 1_900_000_000
EVENT = Event(
    "e1",
    "p1",
    "peak",
    (
        Interval(0, T0, 3600, (Payload("DISPATCH_SETPOINT", (5.0,)),)),
        Interval(1, T0 + 3600, 3600, (Payload("DISPATCH_SETPOINT", (3.0,)),)),
    ),
)


def payloads(interval_payloads: tuple[Payload, ...]) -> dict[str, object]:
    return {p.type: p.values[0] for p in interval_payloads}


def test_only_begun_intervals_are_reported_with_counts_power_and_charge() -> None:
    answers = [
        Answer(1, (0,), 1, T0 - 100),
        Answer(1, (0,), 2, T0 + 5),  # the latest answer of a device counts
        Answer(2, (0,), 1, T0 - 90),
        Answer(3, (0,), 4, T0 + 10),  # device 3 opted out
        Answer(9, (0,), 2, T0),  # not in this group: ignored
    ]
    samples = [
        Sample(1, T0 + 60, watts=2000, soc_percent=80),
        Sample(1, T0 + 120, watts=3000, soc_percent=78),  # device 1: mean 2500 W, last 78 %
        Sample(2, T0 + 60, watts=1500, soc_percent=50),
        Sample(2, T0 - 60, watts=9999),  # before the interval: ignored
    ]
    (first,) = group_report(EVENT, [1, 2, 3], answers, samples, now=T0 + 600)
    assert (first.interval_id, first.start, first.duration) == (0, T0, 3600)
    assert payloads(first.payloads) == {
        "X_CSIP_DEVICES": 3,
        "X_CSIP_RESPONSES_RECEIVED": 1,
        "X_CSIP_RESPONSES_STARTED": 1,
        "X_CSIP_RESPONSES_OPTED_OUT": 1,
        "DEMAND": 4.0,  # (2500 + 1500) W = 4.0 kW
        "STORAGE_CHARGE_LEVEL": 0.64,  # mean of 78 % and 50 %
    }


def test_the_report_grows_as_intervals_pass_and_leaves_out_figures_without_data() -> None:
    report = group_report(EVENT, [1], [], [], now=T0 + 3600)
    assert [r.interval_id for r in report] == [0, 1]
    assert payloads(report[1].payloads) == {"X_CSIP_DEVICES": 1}
