"""`csip demo`: data every console page can show, written through the same use cases the
protocol faces call (issue 13).

Devices are registered out of band and then post what a real device posts, as themselves
(a device principal, exactly what their TLS certificate would make them): DeviceInformation,
DERCapability, DERSettings, DERStatus, DERAvailability, a MirrorUsagePoint with 24 hours of
W and state-of-charge readings, and, for a few, an alarm (LogEvent). The program, its
enrollments and its events go through the VTN use case a BL client reaches, so the engine
turns them into DERControls as it would in the field: two past events (one cancelled), one
active now, two scheduled. A few devices answer the active event's controls. A second
program, 'demo-battery', dispatches the batteries per device: its event began two hours ago
and asks each feeder for kW, interval by interval (the capacity page's requested vs
delivered).

Idempotent: a second run finds the marker setting and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from csip.config import Settings
from csip.domain.devices import Principal, PrincipalKind
from csip.errors import CsipError
from csip.openadr.rules import EVENT, PROGRAM
from csip.openadr.rules import Principal as OadrPrincipal
from csip.pki.identity import sfdi_from_lfdi
from csip.sep2.xml import E, serialize
from csip.services.admin import PreRegistration
from csip.store import engine as engine_store
from csip.store.engine import ProgramChoices

MARKER = "demo_loaded"
OEMS = (
    ("SunVolt", "SV-Home 10", 80, 10_000, 5000),
    ("GridBox", "GB-13", 80, 13_500, 5000),
    ("Heliox", "HX-PV 6", 4, 0, 6000),
    ("Ampere Storage", "AS-PowerWall", 83, 9_800, 4600),
)
#: kW the battery event asks of each feeder, per hour.
BATTERY_KW = (20, 30, 25)
FEEDERS = (("Feeder North", "feeder-north"), ("Feeder South", "feeder-south"))
#: The utility acts as a business-logic client with every scope (as the admin API does).
UTILITY = OadrPrincipal(
    "csip-demo",
    "bl",
    frozenset({"read_all", "write_programs", "write_events", "write_reports", "write_vens"}),
)


def is_battery(index: int) -> bool:
    return OEMS[index % len(OEMS)][3] > 0


def demo_lfdi(index: int) -> str:
    return hashlib.sha256(f"csip-demo-device-{index}".encode()).hexdigest()[:40].upper()


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(name: str, value: int) -> Any:
    return getattr(E, name)(E.multiplier("0"), E.value(str(value)))


async def load_demo(settings: Settings, devices: int = 50) -> str:
    from csip.app import build

    app = build(settings)
    await app.store.migrate()
    try:
        if await app.store.get_setting(MARKER):
            return "demo data is already loaded (nothing changed)"
        await load_into(app, devices)
        await app.store.set_settings({MARKER: True})
    finally:
        await app.store.close()
    return (
        f"loaded {devices} simulated devices, {len(FEEDERS) + 1} groups, the programs "
        "'demo-peak' (past, active and scheduled events) and 'demo-battery' (per-device "
        "dispatch); open the console at /console"
    )


async def load_into(app: Any, count: int, extra_lfdis: Sequence[str] = ()) -> None:
    """The demo data, through `app`'s services (a built csip.app.App, running or not);
    `extra_lfdis`: devices registered already (say, with a test certificate) that join the
    first feeder group."""
    now = app.clock.now_int()
    hour = now - now % 3600
    aggregators = ["demo-aggregator-a", "demo-aggregator-b"]
    for name in aggregators:
        await app.admin.create_aggregator(name)
    lfdis = [demo_lfdi(i) for i in range(count)]
    await app.admin.preregister(
        [
            PreRegistration(
                lfdi, sfdi_from_lfdi(lfdi), aggregator=aggregators[i % 2] if i % 3 == 0 else None
            )
            for i, lfdi in enumerate(lfdis)
        ]
    )
    root = await app.programs.create_group("Demo utility", "utility", None)
    feeders = []
    for description, target in FEEDERS:
        group = await app.programs.create_group(description, "feeder", root.id)
        await app.engine.set_target(group.id, target)
        feeders.append(group)
    for index, feeder in enumerate(feeders):
        await app.programs.add_members(feeder.id, lfdis[index :: len(feeders)])
    if extra_lfdis:
        await app.programs.add_members(feeders[0].id, list(extra_lfdis))

    batteries = sum(1 for i in range(count) if is_battery(i))
    for index, lfdi in enumerate(lfdis):
        device = await app.sep2.store.get_end_device_by_lfdi(lfdi)
        principal = Principal(lfdi, device.sfdi, PrincipalKind.DEVICE)
        await _post_device(app, principal, device.id, index, now, batteries)
        if index % 9 == 4:
            await app.der_device.post_log_event(
                principal, device.id, _log_event(index, now - 600 * index)
            )

    program = await _program(app, "demo-peak", payloadType="SIMPLE")
    program_id = program["id"]
    await app.engine.set_choices(
        ProgramChoices(
            program_id,
            10,
            {1: {"opModMaxLimW": 5000}, 2: {"opModMaxLimW": 2500}},
            None,
            None,
            3600,
            "utility",
        )
    )
    for feeder in feeders:
        await app.engine.enroll(program_id, feeder.id)
    events = (
        ("yesterday's peak", hour - 26 * 3600, 2, 1, None),
        ("cancelled test", hour - 5 * 3600, 1, 2, None),
        ("peak now", hour, 2, 1, None),
        ("tomorrow's peak", hour + 22 * 3600, 3, 2, None),
        ("north feeder relief", hour + 30 * 3600, 1, 2, ["feeder-north"]),
    )
    created = []
    for name, start, intervals, level, targets in events:
        body: dict[str, Any] = {
            "objectType": "EVENT",
            "programID": program_id,
            "eventName": name,
            "intervalPeriod": {"start": _iso(start), "duration": "PT1H"},
            "intervals": [
                {"id": i, "payloads": [{"type": "SIMPLE", "values": [level]}]}
                for i in range(intervals)
            ],
        }
        if targets:
            body["targets"] = targets
        created.append(await _create(app, EVENT, body))
    await app.vtn.delete(UTILITY, EVENT, created[1]["id"])
    await _answer(app, created[2]["id"], lfdis[:10], now)
    await _battery_program(app, feeders, hour)


async def _battery_program(app: Any, feeders: Sequence[Any], hour: int) -> None:
    """A customer battery program with per-device dispatch and an evening event that began
    two hours ago: the capacity page has power asked of the feeders to set beside what their
    devices metered."""
    program = await _program(app, "demo-battery", payloadType="DISPATCH_SETPOINT", units="KW")
    await app.engine.set_choices(
        ProgramChoices(program["id"], 5, {}, None, None, 3600, "utility", dispatch="per-device")
    )
    for feeder in feeders:
        await app.engine.enroll(program["id"], feeder.id)
    body = {
        "objectType": "EVENT",
        "programID": program["id"],
        "eventName": "battery dispatch",
        "intervalPeriod": {"start": _iso(hour - 2 * 3600), "duration": "PT1H"},
        "intervals": [
            {"id": i, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [kw]}]}
            for i, kw in enumerate(BATTERY_KW)
        ],
    }
    await _create(app, EVENT, body)


async def _create(app: Any, kind: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Create an OpenADR object as the utility, through the VTN's own use case."""
    created: dict[str, Any] = json.loads(
        await app.vtn.create(UTILITY, kind, json.dumps(body).encode())
    )
    return created


async def _program(app: Any, name: str, **descriptor: str) -> dict[str, Any]:
    """A program with one payload descriptor (its OpenADR fields as keywords)."""
    payload = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", **descriptor}
    body = {"objectType": "PROGRAM", "programName": name, "payloadDescriptors": [payload]}
    return await _create(app, PROGRAM, body)


async def _post_device(
    app: Any, principal: Principal, device_id: int, index: int, now: int, batteries: int
) -> None:
    oem, model, der_type, wh, w = OEMS[index % len(OEMS)]
    battery = wh > 0
    lfdi = principal.lfdi
    info = E.DeviceInformation(
        E.lFDI(lfdi),
        E.mfDate(str(now - 400 * 86400)),
        E.mfHwVer("1.0"),
        E.mfID(str(37_244 + index % len(OEMS))),
        E.mfInfo(oem),
        E.mfModel(model),
        E.mfSerNum(f"{model[:2]}-{index:05d}"),
        E.primaryPower("0"),
        E.secondaryPower("0"),
        E.swActTime(str(now - 30 * 86400)),
        E.swVer("2.4.1"),
    )
    await app.sep2.put_document(principal, device_id, "di", serialize(info))
    storage = (
        [_quantity("rtgMaxChargeRateW", w), _quantity("rtgMaxDischargeRateW", w)] if battery else []
    )
    capability = E.DERCapability(
        E.modesSupported("00500040" if battery else "00300041"),
        *storage,
        _quantity("rtgMaxVA", w),
        _quantity("rtgMaxVar", w // 2),
        _quantity("rtgMaxW", w),
        *([_quantity("rtgMaxWh", wh)] if battery else []),
        E.type(str(der_type)),
    )
    settings = E.DERSettings(
        E.modesEnabled("00500040" if battery else "00300041"),
        E.setGradW("1000"),
        _quantity("setMaxW", w),
        E.updatedTime(str(now)),
    )
    soc_now = 35 + (index * 37) % 60
    reserve = 10 + (index % 4) * 5
    parts = [("dercap", capability), ("derg", settings)]
    if battery:
        parts.append(
            (
                "ders",
                E.DERStatus(
                    E.readingTime(str(now - 60)),
                    E.stateOfChargeStatus(E.dateTime(str(now - 60)), E.value(str(soc_now * 100))),
                ),
            )
        )
        parts.append(
            (
                "dera",
                E.DERAvailability(
                    E.readingTime(str(now - 60)), E.reservePercent(str(reserve * 100))
                ),
            )
        )
    for part, document in parts:
        await app.der_device.put_der_document(principal, device_id, 1, part, serialize(document))
    await app.telemetry.post_mup(principal, _mirror(lfdi, index, now, battery, soc_now, batteries))


def battery_share_w(index: int, at: int, now: int, batteries: int) -> float | None:
    """What demo battery `index` metered at `at` while the battery event ran (None outside
    it): its share of what the event asks of the two feeders, 85 % to 95 % of it."""
    hour = now - now % 3600
    slot = (at - (hour - 2 * 3600)) // 3600
    if not 0 <= slot < len(BATTERY_KW) or batteries == 0:
        return None
    asked = BATTERY_KW[slot] * len(FEEDERS) * 1000 / batteries
    return asked * (0.85 + 0.05 * (index % 3))


def _mirror(
    lfdi: str, index: int, now: int, battery: bool, soc_now: int, batteries: int = 0
) -> bytes:
    """A MirrorUsagePoint with 24 hours of 15-minute readings: W (a daily curve: PV at noon,
    a battery discharging at the evening peak and following the battery event while it runs)
    and, for a battery, its state of charge."""
    step = 900
    end = now - now % step
    starts = [end - step * k for k in range(96, 0, -1)]
    watts, socs = [], []
    for t in starts:
        hour = (t % 86400) / 3600
        if battery:
            w = 2500 * math.sin((hour - 12) / 24 * 2 * math.pi) + 200 * ((index % 5) - 2)
            share = battery_share_w(index, t, now, batteries)
            w = w if share is None else share
            soc = soc_now + 25 * math.sin((hour - 14) / 24 * 2 * math.pi) * ((end - t) / 86400)
            socs.append(max(5, min(100, round(soc))))
        else:
            w = max(0.0, 4000 * math.sin((hour - 6) / 12 * math.pi)) if 6 <= hour <= 18 else 0.0
        watts.append(round(w))

    def meter(name: str, uom: int, multiplier: int, values: list[int]) -> Any:
        mrid = hashlib.sha256(f"{lfdi}/{name}".encode()).hexdigest()[:32].upper()
        return E.MirrorMeterReading(
            E.mRID(mrid),
            E.description(name),
            E.MirrorReadingSet(
                E.mRID(mrid[:24] + "00000001"),
                E.description(f"{name} last 24 h"),
                E.timePeriod(E.duration(str(step * len(values))), E.start(str(starts[0]))),
                *[
                    E.Reading(E.timePeriod(E.duration(str(step)), E.start(str(t))), E.value(str(v)))
                    for t, v in zip(starts, values, strict=True)
                ],
            ),
            E.ReadingType(
                E.dataQualifier("2"),
                E.kind("37" if uom == 38 else "0"),
                E.phase("0"),
                E.powerOfTenMultiplier(str(multiplier)),
                E.uom(str(uom)),
            ),
        )

    meters = [meter("W", 38, 0, watts)]
    if battery:
        meters.append(meter("SoC", 0, 0, socs))
    body = E.MirrorUsagePoint(
        E.mRID(hashlib.sha256(f"{lfdi}/mup".encode()).hexdigest()[:32].upper()),
        E.description("demo DER"),
        E.roleFlags("0049"),
        E.serviceCategoryKind("0"),
        E.status("1"),
        E.deviceLFDI(lfdi),
        *meters,
    )
    return serialize(body)


def _log_event(index: int, at: int) -> bytes:
    return serialize(
        E.LogEvent(
            E.createdDateTime(str(at)),
            E.details("battery temperature high" if index % 2 else "inverter ground fault"),
            E.extendedData("0"),
            E.functionSet("0"),
            E.logEventCode(str(3 + index % 4)),
            E.logEventID(str(index)),
            E.logEventPEN("37244"),
            E.profileID("0"),
        )
    )


async def _answer(app: Any, event_id: str, lfdis: list[str], now: int) -> None:
    """The first devices say they received the active event's controls and follow them
    (a device outside a control's group is refused, as in the field, and skipped)."""
    async with app.store.transaction() as s:
        links = await engine_store.select_engine_controls(s, event_id)
    for link in links:
        for index, lfdi in enumerate(lfdis):
            device = await app.sep2.store.get_end_device_by_lfdi(lfdi)
            principal = Principal(lfdi, device.sfdi, PrincipalKind.DEVICE)
            body = serialize(
                E.DERControlResponse(
                    E.createdDateTime(str(now - 30 + index)),
                    E.endDeviceLFDI(lfdi),
                    E.status("2" if index % 4 == 0 else "1"),
                    E.subject(link.control.mrid),
                )
            )
            try:
                await app.programs.post_response(principal, link.control.program_id, body)
            except CsipError:
                continue
