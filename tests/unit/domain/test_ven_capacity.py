"""An aggregator's capacity from its VEN's storage reports (issue 12 item 5), pure rules and
the wire translator; every figure worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime

from csip.domain.ven_capacity import (
    NO_DISCHARGE,
    NO_STORAGE_ENERGY,
    STALE_REPORT,
    StorageValue,
    ven_capacity,
)
from csip.openadr.reports import storage_values

H = 527_777  # an epoch hour
NOW = H * 3600 + 1800  # half past it
NEXT = (H + 1) * 3600


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload(kind: str, value: float) -> dict[str, object]:
    return {"type": kind, "values": [value]}


REPORT = {
    "eventID": "e1",
    "clientName": "agg-1",
    "payloadDescriptors": [
        {"payloadType": "STORAGE_USABLE_CAPACITY", "units": "KWH"},
        {"payloadType": "STORAGE_CHARGE_LEVEL", "units": "PERCENT"},
        {"payloadType": "STORAGE_MAX_DISCHARGE_POWER", "units": "KW"},
        {"payloadType": "STORAGE_DISPATCH_FORECAST", "units": "WH"},
    ],
    "resources": [
        {  # 20 kWh at 60 %, 5 kW; the VEN forecasts 40 % from the next hour
            "resourceName": "site-1",
            "intervalPeriod": {"start": iso(NOW - 600), "duration": "PT40M"},
            "intervals": [
                {
                    "id": 0,
                    "payloads": [
                        payload("STORAGE_USABLE_CAPACITY", 20),
                        payload("STORAGE_CHARGE_LEVEL", 0.6),
                        payload("STORAGE_MAX_DISCHARGE_POWER", 5),
                    ],
                },
                {
                    "id": 1,
                    "intervalPeriod": {"start": iso(NEXT), "duration": "PT1H"},
                    "payloads": [payload("STORAGE_CHARGE_LEVEL", 0.4)],
                },
            ],
        },
        {  # 10 kWh at 50 %, 3 kW, and the VEN says only 2000 Wh could be dispatched
            "resourceName": "site-2",
            "intervalPeriod": {"start": iso(NOW - 600), "duration": "PT1H"},
            "intervals": [
                {
                    "id": 0,
                    "payloads": [
                        payload("STORAGE_USABLE_CAPACITY", 10),
                        payload("STORAGE_CHARGE_LEVEL", 0.5),
                        payload("STORAGE_MAX_DISCHARGE_POWER", 3),
                        payload("STORAGE_DISPATCH_FORECAST", 2000),
                    ],
                }
            ],
        },
        {  # a level but no capacity
            "resourceName": "site-3",
            "intervalPeriod": {"start": iso(NOW - 600), "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [payload("STORAGE_CHARGE_LEVEL", 0.9)]}],
        },
        {  # reported, but its interval ended three hours ago
            "resourceName": "site-4",
            "intervalPeriod": {"start": iso(NOW - 4 * 3600), "duration": "PT1H"},
            "intervals": [
                {
                    "id": 0,
                    "payloads": [
                        payload("STORAGE_USABLE_CAPACITY", 10),
                        payload("STORAGE_CHARGE_LEVEL", 1.0),
                        payload("STORAGE_MAX_DISCHARGE_POWER", 5),
                    ],
                }
            ],
        },
        {  # no storage at all: not a storage resource, not listed
            "resourceName": "meter",
            "intervalPeriod": {"start": iso(NOW - 600), "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [payload("USAGE", 3.2)]}],
        },
    ],
}


def test_storage_payloads_are_read_in_wh_w_and_percent_with_their_times() -> None:
    values = storage_values(REPORT, 123.0)
    site_1 = sorted(
        (v.payload_type, v.start, v.end, v.value) for v in values if v.resource == "site-1"
    )
    assert site_1 == [
        ("STORAGE_CHARGE_LEVEL", NOW - 600, NOW + 1800, 60.0),
        ("STORAGE_CHARGE_LEVEL", NEXT, NEXT + 3600, 40.0),
        ("STORAGE_MAX_DISCHARGE_POWER", NOW - 600, NOW + 1800, 5000.0),
        ("STORAGE_USABLE_CAPACITY", NOW - 600, NOW + 1800, 20_000.0),
    ]
    dispatchable = [v for v in values if v.payload_type == "STORAGE_DISPATCH_FORECAST"]
    assert [(v.resource, v.value) for v in dispatchable] == [("site-2", 2000.0)]
    assert {v.resource for v in values} == {"site-1", "site-2", "site-3", "site-4"}
    assert storage_values(REPORT, 123.0, {"site-2"}) == [
        v for v in values if v.resource == "site-2"
    ]


def test_unknown_units_are_left_out_not_guessed() -> None:
    odd = {
        **REPORT,
        "payloadDescriptors": [{"payloadType": "STORAGE_USABLE_CAPACITY", "units": "KVAH"}],
    }
    assert not [v for v in storage_values(odd, 0.0) if v.payload_type == "STORAGE_USABLE_CAPACITY"]


def test_a_vens_capacity_above_the_program_floor_now_and_ahead() -> None:
    capacity = ven_capacity(storage_values(REPORT, 123.0), NOW, program_floor=20.0, hours=3)
    # site-1: (60 - 20) % of 20 kWh = 8 kWh; 8 kWh over an hour is 8 kW, its limit 5 kW.
    # site-2: (50 - 20) % of 10 kWh = 3 kWh, but the VEN can dispatch only 2 kWh: 2 kWh, 2 kW.
    assert (capacity.now.energy_wh, capacity.now.power_w, capacity.now.devices) == (
        10_000.0,
        7000.0,
        2,
    )
    assert capacity.resources == 4
    assert capacity.unavailable == {"site-3": NO_STORAGE_ENERGY, "site-4": STALE_REPORT}
    # from the next hour site-1's forecast 40 %: 4 kWh, 4 kW; site-2 holds: 6 kWh, 6 kW
    assert [(p.at, p.energy_wh, p.power_w) for p in capacity.forecast] == [
        (NEXT, 6000.0, 6000.0),
        (NEXT + 3600, 6000.0, 6000.0),
        (NEXT + 7200, 6000.0, 6000.0),
    ]
    # held for 2 hours instead of one, site-1's 8 kWh is 4 kW, site-2's 2 kWh 1 kW
    two_hours = ven_capacity(
        storage_values(REPORT, 123.0), NOW, program_floor=20.0, duration=7200, hours=1
    )
    assert two_hours.now.power_w == 5000.0


def test_a_later_report_wins_and_a_resource_needs_a_discharge_power() -> None:
    old = StorageValue("s", "STORAGE_DISPATCH_FORECAST", NOW - 60, NOW + 3540, 1000.0, 1.0)
    new = StorageValue("s", "STORAGE_DISPATCH_FORECAST", NOW - 60, NOW + 3540, 3000.0, 2.0)
    power = StorageValue("s", "STORAGE_MAX_DISCHARGE_POWER", NOW - 60, NOW + 3540, 2000.0, 1.0)
    capacity = ven_capacity([new, old, power], NOW, hours=1)
    assert (capacity.now.energy_wh, capacity.now.power_w) == (3000.0, 2000.0)
    assert ven_capacity([old], NOW, hours=1).unavailable == {"s": NO_DISCHARGE}
