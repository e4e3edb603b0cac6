"""What devices answer, as OpenADR report intervals for the utility (program engine, item 5).

For an event whose reportDescriptors ask for reports, csip reports on it as its own client:
one report resource per enrolled 2030.5 group, one interval per event interval that has
started, growing as intervals pass. Each interval carries:

* how many of the group's devices answered each DERControl covering it, by their latest
  2030.5 response status (IEEE 2030.5 Table 27, DER rows), as csip's private payload types
  ``X_CSIP_RESPONSES_<STATUS>`` (OpenADR 3 has no enumerated type for them), and
  ``X_CSIP_DEVICES``, how many devices the group had;
* ``DEMAND`` (readingType ``MEAN``, units ``KW``): the group's measured active power, the sum
  over devices of each device's mean reading inside the interval (2030.5 sign: positive is
  delivered by the DER);
* ``STORAGE_CHARGE_LEVEL`` (units ``PERCENT``, 0.0-1.0 as the OpenADR units table defines
  PERCENT): the mean over devices of each one's last state of charge inside the interval;
* when the event asks for them, the storage capacity payloads (`with_capacity`): what the
  group's batteries could give above their reserves, as of the interval in progress.

A figure with no data behind it is left out rather than reported as zero. Pure: `now` is
passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from csip.domain.programs import Event, Payload

#: Private report payload type per DER response status (names from IEEE 2030.5 Table 27).
RESPONSE_TYPES: Mapping[int, str] = {
    1: "X_CSIP_RESPONSES_RECEIVED",
    2: "X_CSIP_RESPONSES_STARTED",
    3: "X_CSIP_RESPONSES_COMPLETED",
    4: "X_CSIP_RESPONSES_OPTED_OUT",
    5: "X_CSIP_RESPONSES_NOT_PARTICIPATING",
    6: "X_CSIP_RESPONSES_CANCELLED",
    7: "X_CSIP_RESPONSES_SUPERSEDED",
    8: "X_CSIP_RESPONSES_PARTIAL_OPT_OUT",
    9: "X_CSIP_RESPONSES_PARTIAL_CANCELLED",
    10: "X_CSIP_RESPONSES_NO_PARTICIPATION",
    252: "X_CSIP_RESPONSES_REJECTED_EXPIRED",
    253: "X_CSIP_RESPONSES_REJECTED_INVALID",
    254: "X_CSIP_RESPONSES_REJECTED_NOT_APPLICABLE",
}
DEVICES_TYPE = "X_CSIP_DEVICES"


@dataclass(frozen=True, slots=True)
class Answer:
    """One DERControlResponse of one device to a control that covers `interval_ids`."""

    device_id: int
    interval_ids: tuple[int, ...]
    status: int
    at: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One mirrored reading of one device: active power in W or state of charge 0-100 %."""

    device_id: int
    at: int
    watts: float | None = None
    soc_percent: float | None = None


@dataclass(frozen=True, slots=True)
class ReportInterval:
    interval_id: int
    start: int
    duration: int
    payloads: tuple[Payload, ...]


def _counts(device_ids: frozenset[int], answers: Iterable[Answer]) -> dict[int, int]:
    latest: dict[int, Answer] = {}
    for answer in answers:
        if answer.device_id not in device_ids:
            continue
        seen = latest.get(answer.device_id)
        if seen is None or (answer.at, answer.status) >= (seen.at, seen.status):
            latest[answer.device_id] = answer
    counts: dict[int, int] = {}
    for answer in latest.values():
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return counts


def demand_kw(samples: Sequence[Sample]) -> float | None:
    """The devices' measured active power in kW: the sum of each device's mean reading."""
    per_device: dict[int, list[float]] = {}
    for sample in samples:
        if sample.watts is not None:
            per_device.setdefault(sample.device_id, []).append(sample.watts)
    if not per_device:
        return None
    return sum(sum(v) / len(v) for v in per_device.values()) / 1000


def _charge_level(samples: Sequence[Sample]) -> float | None:
    last: dict[int, Sample] = {}
    for sample in samples:
        if sample.soc_percent is not None:
            seen = last.get(sample.device_id)
            if seen is None or sample.at >= seen.at:
                last[sample.device_id] = sample
    levels = [s.soc_percent for s in last.values() if s.soc_percent is not None]
    return sum(levels) / len(levels) / 100 if levels else None


def group_report(
    event: Event,
    device_ids: Iterable[int],
    answers: Iterable[Answer],
    samples: Iterable[Sample],
    now: int,
) -> tuple[ReportInterval, ...]:
    """The report intervals of one group for one event: every interval begun by `now`."""
    devices = frozenset(device_ids)
    answer_list = list(answers)
    sample_list = [s for s in samples if s.device_id in devices]
    found = []
    for interval in sorted(event.intervals, key=lambda i: (i.start, i.id)):
        if interval.start > now:
            continue
        payloads = [Payload(DEVICES_TYPE, (len(devices),))]
        relevant = [a for a in answer_list if interval.id in a.interval_ids]
        for status, count in sorted(_counts(devices, relevant).items()):
            payloads.append(
                Payload(RESPONSE_TYPES.get(status, f"X_CSIP_RESPONSES_{status}"), (count,))
            )
        inside = [s for s in sample_list if interval.start <= s.at < min(interval.end, now + 1)]
        demand = demand_kw(inside)
        if demand is not None:
            payloads.append(Payload("DEMAND", (round(demand, 6),)))
        level = _charge_level(inside)
        if level is not None:
            payloads.append(Payload("STORAGE_CHARGE_LEVEL", (round(level, 6),)))
        found.append(
            ReportInterval(interval.id, interval.start, interval.duration, tuple(payloads))
        )
    return tuple(found)


def with_capacity(
    intervals: Sequence[ReportInterval],
    now_payloads: Sequence[Payload],
    kept: Mapping[int, Sequence[Payload]],
    now: int,
) -> tuple[ReportInterval, ...]:
    """The intervals with the storage capacity payloads: the interval in progress gets
    `now_payloads` (the group's capacity now); one that has ended keeps those it was reported
    with while it ran (`kept`, by interval id), or none: csip does not make up the past."""
    found = []
    for interval in intervals:
        if interval.start <= now < interval.start + interval.duration:
            extra: Sequence[Payload] = now_payloads
        else:
            extra = kept.get(interval.interval_id, ())
        found.append(
            ReportInterval(
                interval.interval_id,
                interval.start,
                interval.duration,
                (*interval.payloads, *extra),
            )
        )
    return tuple(found)
