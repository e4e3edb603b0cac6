"""csip's own OpenADR reports on an event, as the 3.1.0 ``reportRequest`` spells them (the only
translator of domain.answers report intervals to the wire).

Payload types: the enumerated ``DEMAND`` (readingType MEAN, units KW) and
``STORAGE_CHARGE_LEVEL`` (readingType MEAN, units PERCENT, 0-1) where OpenADR has one; csip's
private ``X_CSIP_DEVICES`` and ``X_CSIP_RESPONSES_<STATUS>`` (readingType SUMMED: counts of
devices) otherwise. Each type present gets a reportPayloadDescriptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from csip.domain.answers import ReportInterval
from csip.domain.programs import Payload

#: The clientID and clientName csip reports under (never a token's: see rules.CSIP_CLIENT_ID).
CLIENT_NAME = "csip"

_DESCRIBED: dict[str, tuple[str, str | None]] = {
    "DEMAND": ("MEAN", "KW"),
    "STORAGE_CHARGE_LEVEL": ("MEAN", "PERCENT"),
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
