"""Admin API for the fleet (issue 12): each device's typed facts with their ages, the utility's
per-site reserve, and capacity above reserve now and for the next 24 hours, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from csip.domain.fleet import (
    FIELDS,
    PARTS,
    CapacityPoint,
    DerFacts,
    ForecastError,
    device_capacity,
)
from csip.domain.ven_capacity import VenCapacity
from csip.errors import BadRequest
from csip.services.fleet import CapacityReport, FleetService, VenReport

FLEET = web.AppKey("admin_fleet", FleetService)
#: Query parameters of GET /api/capacity (also in /openapi.json).
CAPACITY_QUERY = (
    ("group", "integer", "a group id: its devices and those of every group below it"),
    ("aggregator", "string", "an aggregator's name: the devices it manages"),
    (
        "ven",
        "string",
        "a VEN's name: its resources' capacity from the STORAGE_* payloads of its reports",
    ),
    ("program", "integer", "a DERProgram id: the devices of its group"),
    (
        "openadr_program",
        "string",
        "an OpenADR programID: its enrolled groups, with its reserve floor term",
    ),
    ("floor", "number", "the program's reserve floor, percent of usable energy (default 0)"),
    ("duration", "integer", "seconds the power must be held for (default 3600)"),
    ("hours", "integer", "hours of forecast (default 24, at most 168)"),
    ("error", "boolean", "1: add the forecast's error on yesterday (reads 8 days of hours)"),
    ("format", "string", "csv for text/csv (or send Accept: text/csv)"),
)


class ReserveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reserve_percent: float | None = Field(
        description="this site's reserve, percent of usable energy; null removes it "
        "(the reserve is the largest of the program's floor, this, and the device's own "
        "DERAvailability reservePercent)",
        ge=0,
        le=100,
    )


def _fleet(request: web.Request) -> FleetService:
    return request.app[FLEET]


def _age(now: int, at: int | None) -> int | None:
    return None if at is None else now - at


def facts_json(lfdi: str, facts: DerFacts, now: int) -> dict[str, Any]:
    """The facts by part, 2030.5 names, each part with when it was posted and its age; and
    what they mean for capacity (the explanation dispatch and the forecast start from)."""
    parts: dict[str, dict[str, Any]] = {}
    for document, at_name in PARTS.items():
        at = getattr(facts, at_name)
        values = {
            name: getattr(facts, attr) for name, (attr, when) in FIELDS.items() if when == at_name
        }
        parts[document] = {"at": at, "age": _age(now, at), **values}
    readings = {
        name: {
            "value": getattr(facts, attr),
            "at": getattr(facts, when),
            "age": _age(now, getattr(facts, when)),
        }
        for name, (attr, when) in FIELDS.items()
        if when not in PARTS.values()
    }
    explained = device_capacity(facts, now)
    profile = facts.profile
    return {
        "lfdi": lfdi,
        "now": now,
        **parts,
        "readings": readings,
        "post_rate": facts.post_rate,
        "state_of_charge": facts.soc_percent,
        "state_of_charge_at": facts.soc_at,
        "state_of_charge_age": _age(now, facts.soc_at),
        "stale": facts.is_stale(now),
        "usable_wh": facts.usable_wh,
        "max_discharge_w": facts.max_discharge_w,
        "max_charge_w": facts.max_charge_w,
        "site_reserve_percent": facts.site_reserve_percent,
        "hour_of_day_w": None
        if profile is None
        else [None if v != v else round(v, 3) for v in profile],
        "capacity": {
            "reserve_percent": explained.reserve_percent,
            "energy_wh": explained.energy_wh,
            "power_w": explained.power_w,
            "duration": 3600,
            "unavailable": explained.unavailable,
        },
    }


async def get_facts(request: web.Request) -> web.Response:
    lfdi = request.match_info["lfdi"]
    service = _fleet(request)
    device, facts = await service.facts(lfdi)
    return web.json_response(facts_json(device.lfdi, facts, service.sep2.clock.now_int()))


async def put_reserve(request: web.Request, body: ReserveIn) -> web.Response:
    service = _fleet(request)
    device, _ = await service.facts(request.match_info["lfdi"])
    facts = await service.set_site_reserve(device.lfdi, body.reserve_percent)
    return web.json_response(facts_json(device.lfdi, facts, service.sep2.clock.now_int()))


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be a number from {low:g} to {high:g}")
    return value


def _point(point: CapacityPoint) -> dict[str, Any]:
    return {
        "at": point.at,
        "energy_kwh": round(point.energy_wh / 1000, 3),
        "power_kw": round(point.power_w / 1000, 3),
        "devices": point.devices,
    }


def _error_json(error: ForecastError) -> dict[str, Any]:
    mae = error.mean_absolute_error_wh
    mape = error.mean_absolute_percent_error
    return {
        "day_start": error.day_start,
        "devices": error.devices,
        "mean_absolute_error_kwh": None if mae is None else round(mae / 1000, 3),
        "mean_absolute_percent_error": None if mape is None else round(mape, 2),
        "hours": [
            {
                "at": h.at,
                "forecast_energy_kwh": round(h.forecast_wh / 1000, 3),
                "actual_energy_kwh": round(h.actual_wh / 1000, 3),
            }
            for h in error.hours
        ],
    }


def capacity_json(report: CapacityReport) -> dict[str, Any]:
    capacity = report.capacity
    data: dict[str, Any] = {
        "scope": report.scope or {"all": True},
        "program_floor": capacity.program_floor,
        "duration": capacity.duration,
        "devices": capacity.devices,
        "available": capacity.now.devices,
        "now": _point(capacity.now),
        "forecast": [_point(p) for p in capacity.forecast],
        "unavailable": {
            "count": len(capacity.unavailable),
            "devices": [{"lfdi": lfdi, "reason": why} for lfdi, why in report.flagged.items()],
        },
    }
    if report.error is not None:
        data["forecast_error"] = _error_json(report.error)
    if report.vens is not None:
        data["vens"] = [ven_json(v) for v in report.vens]
        data["total"] = _total(report.capacity.now, report.capacity.forecast, report.vens)
    return data


def _total(
    now: CapacityPoint, forecast: Sequence[CapacityPoint], vens: Sequence[VenReport]
) -> dict[str, Any]:
    """The 2030.5 groups and the VENs together (devices: batteries and VEN resources)."""

    def add(points: Sequence[CapacityPoint]) -> CapacityPoint:
        return CapacityPoint(
            points[0].at,
            sum(p.energy_wh for p in points),
            sum(p.power_w for p in points),
            sum(p.devices for p in points),
        )

    return {
        "now": _point(add([now, *(v.capacity.now for v in vens)])),
        "forecast": [
            _point(add([p, *(v.capacity.forecast[k] for v in vens)]))
            for k, p in enumerate(forecast)
        ],
    }


def ven_json(report: VenReport) -> dict[str, Any]:
    capacity: VenCapacity = report.capacity
    return {
        "ven": report.ven_name,
        "venID": report.ven_id,
        "program_floor": capacity.program_floor,
        "duration": capacity.duration,
        "resources": capacity.resources,
        "available": capacity.now.devices,
        "now": _point(capacity.now),
        "forecast": [_point(p) for p in capacity.forecast],
        "unavailable": {
            "count": len(capacity.unavailable),
            "resources": [
                {"resourceName": name, "reason": why} for name, why in capacity.unavailable.items()
            ],
        },
    }


def capacity_csv(report: CapacityReport | VenReport) -> str:
    """One row for now and one per forecast hour: what a spreadsheet plots."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kind", "at", "energy_kwh", "power_kw", "devices"])
    capacity = report.capacity
    points = [("now", capacity.now)] + [("forecast", p) for p in capacity.forecast]
    for kind, point in points:
        row = _point(point)
        writer.writerow([kind, row["at"], row["energy_kwh"], row["power_kw"], row["devices"]])
    return out.getvalue()


async def get_capacity(request: web.Request) -> web.Response:
    query = request.query
    scopes = ("group", "aggregator", "ven", "program", "openadr_program")
    if sum(1 for name in scopes if name in query) > 1:
        raise BadRequest(f"give one of {', '.join(scopes)} (or none for every device)")
    wants_csv = query.get("format") == "csv" or "text/csv" in request.headers.get("Accept", "")
    if "ven" in query:
        ven = await _fleet(request).ven_capacity(
            query["ven"],
            program_floor=_number(request, "floor", 0.0, 0.0, 100.0),
            duration=int(_number(request, "duration", 3600, 60, 86400)),
            hours=int(_number(request, "hours", 24, 1, 168)),
        )
        if wants_csv:
            return web.Response(text=capacity_csv(ven), content_type="text/csv")
        return web.json_response(ven_json(ven))
    ids = {}
    for name in ("group", "program"):
        if name in query:
            if not query[name].isdigit() or len(query[name]) > 10:
                raise BadRequest(f"{name} must be an id")
            ids[name] = int(query[name])
    report = await _fleet(request).capacity(
        group_id=ids.get("group"),
        program_id=ids.get("program"),
        aggregator=query.get("aggregator"),
        openadr_program=query.get("openadr_program"),
        program_floor=_number(request, "floor", 0.0, 0.0, 100.0),
        duration=int(_number(request, "duration", 3600, 60, 86400)),
        hours=int(_number(request, "hours", 24, 1, 168)),
        with_error=query.get("error", "") in ("1", "true"),
    )
    if wants_csv:
        return web.Response(text=capacity_csv(report), content_type="text/csv")
    return web.json_response(capacity_json(report))


def routes() -> tuple[Any, ...]:
    """This module's part of the admin API's route table (see admin_app.ROUTES)."""
    from csip.web.admin_app import Route
    from csip.web.admin_programs import _with_body

    return (
        Route(
            "GET",
            "/api/end-devices/{lfdi}/facts",
            get_facts,
            "A device's typed DER facts (ratings, settings, status, availability, readings), "
            "each part with its time and age, and its capacity above reserve",
        ),
        Route(
            "PUT",
            "/api/end-devices/{lfdi}/reserve",
            _with_body(ReserveIn, put_reserve),
            "Set (or clear with null) a site's reserve, percent of usable energy",
            ReserveIn,
        ),
        Route(
            "GET",
            "/api/capacity",
            get_capacity,
            "Capacity above reserve now and hourly for the next 24 h (kW, kWh) of a group, "
            "an aggregator's devices, a VEN (from its STORAGE_* reports), a program's group, "
            "an OpenADR program's groups and granted VENs, or every device; JSON or CSV",
            query=CAPACITY_QUERY,
        ),
    )
