"""csip's own OpenADR reports on an event, as the 3.1.0 ``reportRequest`` spells them (the only
translator of domain.answers report intervals to the wire).

Payload types: the enumerated ``DEMAND`` (readingType MEAN, units KW),
``STORAGE_CHARGE_LEVEL`` (readingType MEAN, units PERCENT, 0-1) and, when asked, the storage
capacity ones (`capacity_payloads`) where OpenADR has one; csip's
private ``X_CSIP_DEVICES`` and ``X_CSIP_RESPONSES_<STATUS>`` (readingType SUMMED: counts of
devices) otherwise. Each type present gets a reportPayloadDescriptor.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from csip.domain.answers import ReportInterval
from csip.domain.fleet import StorageFigures
from csip.domain.programs import Payload
from csip.domain.ven_capacity import ENERGY, PERCENT, POWER, QUANTITY, StorageValue
from csip.openadr.rules import parse_datetime, parse_duration

#: The clientID and clientName csip reports under (never a token's: see rules.CSIP_CLIENT_ID).
CLIENT_NAME = "csip"

_DESCRIBED: dict[str, tuple[str, str | None]] = {
    "DEMAND": ("MEAN", "KW"),
    "STORAGE_CHARGE_LEVEL": ("MEAN", "PERCENT"),
    "STORAGE_USABLE_CAPACITY": ("SUMMED", "KWH"),
    "STORAGE_DISPATCH_FORECAST": ("FORECAST", "KWH"),
    "STORAGE_MAX_DISCHARGE_POWER": ("SUMMED", "KW"),
    "STORAGE_MAX_CHARGE_POWER": ("SUMMED", "KW"),
}


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: int) -> str:
    return f"PT{seconds}S"


def _descriptor(payload_type: str) -> dict[str, Any]:
    reading_type, units = _DESCRIBED.get(payload_type, ("SUMMED", None))
    out: dict[str, Any] = {
        "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
        "payloadType": payload_type,
        "readingType": reading_type,
    }
    if units is not None:
        out["units"] = units
    return out


def _payload(payload: Payload) -> dict[str, Any]:
    return {"type": payload.type, "values": list(payload.values)}


def capacity_payloads(figures: StorageFigures, asked: Collection[str]) -> tuple[Payload, ...]:
    """The storage payloads asked for, in KWH and KW, from a group's figures now:
    STORAGE_USABLE_CAPACITY (usable energy), STORAGE_DISPATCH_FORECAST (energy above the
    reserves, what could be dispatched), STORAGE_MAX_DISCHARGE_POWER and
    STORAGE_MAX_CHARGE_POWER (what the group can sustain for the interval). Nothing when
    no battery of the group can be counted: a figure with no data behind it is left out."""
    if figures.devices == 0:
        return ()
    values = {
        "STORAGE_USABLE_CAPACITY": figures.usable_wh,
        "STORAGE_DISPATCH_FORECAST": figures.above_reserve_wh,
        "STORAGE_MAX_DISCHARGE_POWER": figures.max_discharge_w,
        "STORAGE_MAX_CHARGE_POWER": figures.max_charge_w,
    }
    return tuple(
        Payload(kind, (round(value / 1000, 6),))
        for kind, value in sorted(values.items())
        if kind in asked
    )


def reported_payloads(
    body: Mapping[str, Any], resource_name: str, types: Collection[str]
) -> dict[int, tuple[Payload, ...]]:
    """interval id -> the payloads of these types a stored report gave the resource."""
    found: dict[int, tuple[Payload, ...]] = {}
    for resource in body.get("resources") or ():
        if resource.get("resourceName") != resource_name:
            continue
        for interval in resource.get("intervals") or ():
            kept = tuple(
                Payload(str(p["type"]), tuple(p.get("values") or ()))
                for p in interval.get("payloads") or ()
                if p.get("type") in types
            )
            if kept and isinstance(interval.get("id"), int):
                found[interval["id"]] = kept
    return found


def report_body(
    event_id: str,
    event_name: str,
    client_id: str,
    resources: Sequence[tuple[str, Sequence[ReportInterval]]],
) -> dict[str, Any]:
    """The stored body of csip's report: resources in the order given, intervals by start."""
    types: dict[str, None] = {}
    wire_resources = []
    for name, intervals in resources:
        wire_intervals = []
        for interval in intervals:
            for payload in interval.payloads:
                types.setdefault(payload.type)
            wire_intervals.append(
                {
                    "id": interval.interval_id,
                    "intervalPeriod": {
                        "start": _iso(interval.start),
                        "duration": _duration(interval.duration),
                    },
                    "payloads": [_payload(p) for p in interval.payloads],
                }
            )
        wire_resources.append({"resourceName": name, "intervals": wire_intervals})
    return {
        "eventID": event_id,
        "clientName": CLIENT_NAME,
        "reportName": f"csip: 2030.5 answers to {event_name}"[:128],
        "payloadDescriptors": [_descriptor(t) for t in sorted(types)],
        "resources": wire_resources,
        "clientID": client_id,
    }


# ---- what a VEN reports of its storage (an aggregator's capacity) ---------------------------
#: Units csip reads each storage quantity in, to Wh, W or percent (absent: the first one).
_TO_SI: dict[str, dict[str, float]] = {
    ENERGY: {"KWH": 1000.0, "WH": 1.0},
    POWER: {"KW": 1000.0, "W": 1.0},
    PERCENT: {"PERCENT": 100.0},
}


def _when(text: Any) -> int | None:
    if not text:
        return None
    found = parse_datetime(str(text))
    return None if found is None else round(found)


def _seconds(text: Any) -> int | None:
    if not text:
        return None
    found = parse_duration(str(text))
    return None if found is None or math.isinf(found) else round(found)


def storage_values(
    body: Mapping[str, Any],
    reported_at: float,
    resources: Collection[str] | None = None,
) -> list[StorageValue]:
    """The storage payloads (domain.ven_capacity.STORAGE_TYPES) of a VEN's report, in Wh, W
    and percent, per resource and interval; of the `resources` named only, when given.

    Intervals are timed as the 3.1.0 report spells it: an interval's own intervalPeriod,
    else the resource's (intervals following one another from its start), else the report's
    time. Units other than the ones the quantity can be read in are left out, not guessed."""
    scale: dict[str, float | None] = {}
    for descriptor in body.get("payloadDescriptors") or ():
        kind = str(descriptor.get("payloadType")) if isinstance(descriptor, Mapping) else ""
        if kind in QUANTITY:
            units = _TO_SI[QUANTITY[kind]]
            given = descriptor.get("units")
            scale[kind] = next(iter(units.values())) if given is None else units.get(str(given))
    found: list[StorageValue] = []
    for resource in body.get("resources") or ():
        if not isinstance(resource, Mapping):
            continue
        name = str(resource.get("resourceName") or "")
        if resources is not None and name not in resources:
            continue
        period = resource.get("intervalPeriod") or {}
        cursor = _when(period.get("start")) or round(reported_at)
        default = _seconds(period.get("duration")) or 0
        for interval in resource.get("intervals") or ():
            own = interval.get("intervalPeriod") or {}
            start = _when(own.get("start")) or cursor
            length = _seconds(own.get("duration"))
            length = default if length is None else length
            cursor = start + length
            for payload in interval.get("payloads") or ():
                kind = str(payload.get("type"))
                if kind not in QUANTITY:
                    continue
                factor = scale.get(kind, next(iter(_TO_SI[QUANTITY[kind]].values())))
                numbers = [
                    v
                    for v in payload.get("values") or ()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                ]
                if factor is None or not numbers:
                    continue
                found.append(
                    StorageValue(
                        name, kind, start, start + length, numbers[0] * factor, reported_at
                    )
                )
    return found
