"""What an event asked of the 2030.5 fleet, interval by interval, beside what the fleet
delivered (the console's capacity page, issue 13 item 1). Pure: `now` is passed in.

**Requested** kW of one interval, from its payloads as the engine maps them (domain/dispatch.py
and services/dispatch.py; the README's "One program, two standards"):

* ``DISPATCH_SETPOINT`` in ``KW``: in a *per-device* program each group the event reached is
  asked that power, shared among its batteries, so the fleet is asked value times groups; in a
  *group* program every device is sent it as its own ``opModTargetW``, so value times devices;
* ``SIMPLE`` level whose row in the program's level table sets ``opModTargetW``: those watts
  times devices;
* anything else (a limit such as ``opModMaxLimW``, a price, an alert) asks for no power: the
  interval has no requested figure, and `asked` says what it carried instead.

**Delivered** kW is the same figure csip's own OpenADR report sends as ``DEMAND``
(domain/answers.py): the sum over the reached devices of each one's mean metered active power
inside the interval (2030.5 sign: positive is delivered), read up to `now` for the interval in
progress; None where no device posted a reading in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from csip.domain.answers import Sample, demand_kw
from csip.domain.programs import Event, Interval

PER_DEVICE = "per-device"


@dataclass(frozen=True, slots=True)
class Delivery:
    interval_id: int
    start: int
    end: int
    requested_kw: float | None
    delivered_kw: float | None
    #: What the interval carried, in words (e.g. "3.3 kW for each of 2 groups", "SIMPLE 1").
    asked: str

    @property
    def delivered_percent(self) -> float | None:
        if self.requested_kw is None or self.delivered_kw is None or not self.requested_kw:
            return None
        return self.delivered_kw / self.requested_kw * 100


def _watts(power: Any) -> float | None:
    if not isinstance(power, Mapping):
        return None
    value, multiplier = power.get("value"), power.get("multiplier", 0)
    if not isinstance(value, int | float) or not isinstance(multiplier, int):
        return None
    return float(value) * 10.0**multiplier


def requested(
    event: Event,
    interval: Interval,
    *,
    dispatch: str,
    simple_levels: Mapping[int, Mapping[str, Any]],
    groups: int,
    devices: int,
) -> tuple[float | None, str]:
    """(requested kW or None, what the interval asked in words)."""
    words: list[str] = []
    for payload in interval.payloads:
        number = payload.values[0] if len(payload.values) == 1 else None
        if isinstance(number, bool) or not isinstance(number, int | float):
            words.append(payload.type)
            continue
        if payload.type == "DISPATCH_SETPOINT" and event.units(payload.type) == "KW":
            if dispatch == PER_DEVICE:
                return float(number) * groups, f"{number:g} kW for each of {groups} group(s)"
            return float(number) * devices, f"{number:g} kW for each of {devices} device(s)"
        if payload.type == "SIMPLE" and isinstance(number, int):
            watts = _watts((simple_levels.get(number) or {}).get("opModTargetW"))
            if watts is not None:
                each = f"{watts / 1000:g} kW for each of {devices} device(s)"
                return watts / 1000 * devices, f"SIMPLE {number}: {each}"
        words.append(f"{payload.type} {number:g}")
    return None, ", ".join(words)


def deliveries(
    event: Event,
    *,
    dispatch: str,
    simple_levels: Mapping[int, Mapping[str, Any]],
    groups: int,
    device_ids: Iterable[int],
    samples: Sequence[Sample],
    now: int,
) -> tuple[Delivery, ...]:
    """Every interval of the event, requested beside delivered (future intervals: no
    delivered figure yet)."""
    devices = frozenset(device_ids)
    measured = [s for s in samples if s.device_id in devices]
    found = []
    for interval in sorted(event.intervals, key=lambda i: (i.start, i.id)):
        kw, asked = requested(
            event,
            interval,
            dispatch=dispatch,
            simple_levels=simple_levels,
            groups=groups,
            devices=len(devices),
        )
        delivered = None
        if interval.start <= now:
            inside = [s for s in measured if interval.start <= s.at < min(interval.end, now + 1)]
            delivered = demand_kw(inside)
        found.append(
            Delivery(
                interval.id,
                interval.start,
                interval.end,
                None if kw is None else round(kw, 6),
                None if delivered is None else round(delivered, 6),
                asked,
            )
        )
    return tuple(found)
