"""The utility's admin API: JSON over HTTP on a loopback listener, bearer-token auth.

Routes are declared once in ROUTES; the same table builds the aiohttp router and the
OpenAPI document served at /openapi.json, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csip import __version__
from csip.domain.devices import Aggregator, ClientCertificate, EndDevice
from csip.errors import BadRequest, CsipError, Unauthorized
from csip.logsafe import safe
from csip.services.admin import AdminService, PreRegistration
from csip.services.bus import EVERYTHING
from csip.services.console import ConsoleService
from csip.services.der_device import DerDeviceService
from csip.services.engine import EngineService
from csip.services.fleet import FleetService
from csip.services.messaging import MessagingService
from csip.services.operators import OperatorService, audit_json
from csip.services.programs import ProgramService
from csip.services.settlement import SettlementService
from csip.services.telemetry import TelemetryService
from csip.services.vtn import VtnService
from csip.services.vtn_auth import VtnAuth
from csip.web import limits
from csip.web.observe import get_metrics
from csip.web.paths import path_id
from csip.web.vtn_app import (  # OpenADR 3 VTN clients (issue 4)
    VTN_AUTH,
    VtnClientIn,
    admin_create_vtn_client,
    admin_delete_vtn_client,
    admin_list_vtn_clients,
)

log = logging.getLogger(__name__)

ADMIN = web.AppKey("admin_service", AdminService)
#: Path parameters that are integer ids (groups, programs, controls).
ID_PARAMS = frozenset({"gid", "pid", "cid", "mid"})
DER_DEVICE = web.AppKey("admin_der_device", DerDeviceService)
TELEMETRY = web.AppKey("admin_telemetry", TelemetryService)
AUDIT = web.AppKey("admin_audit", OperatorService)
#: The console (issue 13) authenticates with its own session cookies.
CONSOLE_PREFIX = "/console"
_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---- request bodies -------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndDeviceIn(_Body):
    """Pre-register (or update) an EndDevice out of band, keyed by LFDI."""

    lfdi: str | None = Field(None, description="40 hex digits; taken from the path on PUT")
    sfdi: int | None = Field(None, description="checked against the LFDI when given")
    pin: int | None = Field(None, description="6-digit registration PIN with check digit")
    aggregator: str | None = Field(None, description="name of the managing aggregator")
    post_rate: int | None = Field(None, gt=0)
    enabled: bool | None = None


class AggregatorIn(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class NotificationHostsIn(_Body):
    hosts: list[str] = Field(
        max_length=100,
        description="host names, IP addresses or networks (CIDR) this aggregator's "
        "notifications may go to (private and loopback included); [] removes the list",
    )
    allow_http: bool = Field(False, description="also admit http:// to these hosts (labs)")


class CertificateAttachIn(_Body):
    expires_at: int | None = Field(None, description="epoch seconds; none = no expiry")


class CertificateStateIn(_Body):
    enabled: bool


class RatesIn(_Body):
    poll_rates: dict[str, int] | None = Field(
        None, description="pollRate per resource (DeviceCapability, EndDeviceList, ...)"
    )
    post_rate: int | None = Field(None, description="default EndDevice postRate; null clears")


class ClockIn(_Body):
    now: float | None = Field(None, description="set the server clock to this epoch time")
    advance: float | None = Field(None, description="move the server clock by seconds")
    reset: bool = False


# ---- representations -------------------------------------------------------------
def end_device_json(device: EndDevice, names: dict[int, str]) -> dict[str, Any]:
    return {
        "lfdi": device.lfdi,
        "sfdi": device.sfdi,
        "href": device.href,
        "pin": device.pin,
        "enabled": device.enabled,
        "aggregator": names.get(device.aggregator_id) if device.aggregator_id else None,
        "registered_at": device.registered_at,
        "changed_time": device.changed_time,
        "registered_in_band": device.in_band,
        #: the aggregator certificate's own EndDevice (CSIP-AUS), not a device it manages
        "aggregator_self": device.aggregator_self,
        "post_rate": device.post_rate,
        "device_category": device.device_category,
    }


def aggregator_json(aggregator: Aggregator) -> dict[str, Any]:
    return {"name": aggregator.name, "created_at": aggregator.created_at}


def certificate_json(cert: ClientCertificate, names: dict[int, str]) -> dict[str, Any]:
    return {
        "lfdi": cert.lfdi,
        "aggregator": names.get(cert.aggregator_id) if cert.aggregator_id else None,
        "enabled": cert.enabled,
        "expires_at": cert.expires_at,
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def parse_json(request: web.Request, model: type[_M]) -> _M:
    """The JSON body checked against `model`; 400 naming every problem otherwise."""
    try:
        raw = await limits.read_body(request, limits.ADMIN_MAX_BODY)
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(problems) from exc


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise BadRequest(f"{name} must be a whole number up to {maximum}")
    return int(raw)


def _svc(request: web.Request) -> AdminService:
    return request.app[ADMIN]


# ---- handlers ----------------------------------------------------------------------
async def get_status(request: web.Request) -> web.Response:
    svc = _svc(request)
    total, _ = await svc.end_devices(0, 0, None)
    return _json(
        {
            "version": __version__,
            "profile": svc.settings.profile,
            "schemas": {
                "directory": str(svc.sep2.schemas.directory),
                "pinned": svc.sep2.schemas.pinned,
                "sha256": svc.sep2.schemas.sha256,
            },
            "database": svc.store.dialect,
            "end_devices": total,
            "registration": {
                "in_band": svc.settings.registration_in_band,
                "out_of_band": svc.settings.registration_out_of_band,
            },
            "clock_offset": svc.clock.offset,
            # which worker answered (several share the port, see `csip serve --workers`)
            "pid": os.getpid(),
            "workers": svc.settings.workers,
            # this worker's 2030.5 reads: render-cache hits, misses, renders, and the polls
            # the fast lane answered (those never reach the cache's get)
            "sep2_cache": dataclasses.asdict(svc.sep2.cache.stats),
        }
    )


async def list_end_devices(request: web.Request) -> web.Response:
    svc = _svc(request)
    offset = _int_query(request, "offset", 0, 2**31)
    limit = _int_query(request, "limit", 100, 1000)
    total, devices = await svc.end_devices(offset, limit, request.query.get("aggregator"))
    names = await svc.aggregator_names()
    items = [end_device_json(d, names) for d in devices]
    return _json({"total": total, "offset": offset, "items": items})


async def bulk_preregister(request: web.Request) -> web.Response:
    """POST a JSON array of EndDeviceIn: one transaction for all new devices."""
    try:
        raw = json.loads(await limits.read_body(request, limits.ADMIN_MAX_BODY) or b"null")
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc.msg}") from exc
    if not isinstance(raw, list) or not raw:
        raise BadRequest("body must be a non-empty JSON array of end devices")
    items = []
    for index, entry in enumerate(raw):
        try:
            model = EndDeviceIn.model_validate(entry)
        except ValidationError as exc:
            raise BadRequest(f"item {index}: {exc.errors()[0]['msg']}") from exc
        if model.lfdi is None:
            raise BadRequest(f"item {index}: lfdi is required")
        items.append(PreRegistration(**model.model_dump()))
    svc = _svc(request)
    results = await svc.preregister(items)
    names = await svc.aggregator_names()
    created = sum(1 for _, was_new in results if was_new)
    return _json(
        {
            "created": created,
            "updated": len(results) - created,
            "items": [end_device_json(d, names) for d, _ in results],
        },
        201 if created else 200,
    )


async def get_end_device(request: web.Request) -> web.Response:
    svc = _svc(request)
    device = await svc.end_device(request.match_info["lfdi"])
    return _json(end_device_json(device, await svc.aggregator_names()))


async def put_end_device(request: web.Request) -> web.Response:
    body = await parse_json(request, EndDeviceIn)
    data = body.model_dump()
    data["lfdi"] = request.match_info["lfdi"]
    svc = _svc(request)
    ((device, created),) = await svc.preregister([PreRegistration(**data)])
    return _json(end_device_json(device, await svc.aggregator_names()), 201 if created else 200)


async def delete_end_device(request: web.Request) -> web.Response:
    await _svc(request).delete_end_device(request.match_info["lfdi"])
    return web.Response(status=204)


async def list_aggregators(request: web.Request) -> web.Response:
    return _json([aggregator_json(a) for a in await _svc(request).aggregators()])


async def post_aggregator(request: web.Request) -> web.Response:
    body = await parse_json(request, AggregatorIn)
    return _json(aggregator_json(await _svc(request).create_aggregator(body.name)), 201)


async def get_aggregator(request: web.Request) -> web.Response:
    return _json(aggregator_json(await _svc(request).aggregator(request.match_info["name"])))


async def delete_aggregator(request: web.Request) -> web.Response:
    await _svc(request).delete_aggregator(request.match_info["name"])
    return web.Response(status=204)


async def get_notification_hosts(request: web.Request) -> web.Response:
    return _json(await _svc(request).notification_hosts(request.match_info["name"]))


async def put_notification_hosts(request: web.Request) -> web.Response:
    body = await parse_json(request, NotificationHostsIn)
    name = request.match_info["name"]
    return _json(await _svc(request).set_notification_hosts(name, body.hosts, body.allow_http))


async def list_aggregator_certificates(request: web.Request) -> web.Response:
    svc = _svc(request)
    names = await svc.aggregator_names()
    certs = await svc.certificates(request.match_info["name"])
    return _json([certificate_json(c, names) for c in certs])


async def put_aggregator_certificate(request: web.Request) -> web.Response:
    body = await parse_json(request, CertificateAttachIn)
    svc = _svc(request)
    cert = await svc.attach_certificate(
        request.match_info["name"], request.match_info["lfdi"], body.expires_at
    )
    return _json(certificate_json(cert, await svc.aggregator_names()))


async def delete_aggregator_certificate(request: web.Request) -> web.Response:
    await _svc(request).detach_certificate(request.match_info["name"], request.match_info["lfdi"])
    return web.Response(status=204)


async def list_certificates(request: web.Request) -> web.Response:
    svc = _svc(request)
    names = await svc.aggregator_names()
    return _json([certificate_json(c, names) for c in await svc.certificates()])


async def put_certificate(request: web.Request) -> web.Response:
    body = await parse_json(request, CertificateStateIn)
    svc = _svc(request)
    cert = await svc.set_certificate_enabled(request.match_info["lfdi"], body.enabled)
    return _json(certificate_json(cert, await svc.aggregator_names()))


async def get_rates(request: web.Request) -> web.Response:
    return _json(await _svc(request).rates())


async def put_rates(request: web.Request) -> web.Response:
    body = await parse_json(request, RatesIn)
    clear = "post_rate" in body.model_fields_set and body.post_rate is None
    return _json(await _svc(request).set_rates(body.poll_rates, body.post_rate, clear))


async def get_clock(request: web.Request) -> web.Response:
    clock = _svc(request).clock
    return _json({"now": clock.now(), "offset": clock.offset})


async def put_clock(request: web.Request) -> web.Response:
    """Labs and tests move the server's one clock; everything time-driven follows it."""
    body = await parse_json(request, ClockIn)
    svc = _svc(request)
    if body.reset:
        svc.clock.offset = 0.0
    if body.now is not None:
        svc.clock.set(body.now)
    if body.advance is not None:
        svc.clock.advance(body.advance)
    # renderings cached under the old time may hold statuses of another moment: drop them all
    await svc.sep2.publish([EVERYTHING])
    return await get_clock(request)


async def post_reset(request: web.Request) -> web.Response:
    """Programs, groups and controls first, then the lab's devices."""
    from csip.web.admin_programs import PROGRAM_ADMIN

    await request.app[PROGRAM_ADMIN].reset()
    return _json({"removed_end_devices": await _svc(request).reset()})


async def get_end_device_der(request: web.Request) -> web.Response:
    """DERCapability, DERSettings, DERStatus, DERAvailability (and ConnectionPoint) as posted."""
    svc = _svc(request)
    device = await svc.end_device(request.match_info["lfdi"])
    return _json(await request.app[DER_DEVICE].der_json(device))


async def get_end_device_log_events(request: web.Request) -> web.Response:
    svc = _svc(request)
    device = await svc.end_device(request.match_info["lfdi"])
    offset = _int_query(request, "offset", 0, 2**31)
    limit = _int_query(request, "limit", 100, 1000)
    return _json(await request.app[DER_DEVICE].log_events_json(device, offset, limit))


# ---- telemetry (issue 3 item 6) ---------------------------------------------------------
class PostRateIn(_Body):
    post_rate: int | None = Field(
        description="this device's postRate (EndDevice and MirrorUsagePoints), seconds; "
        "null = the global default (PUT /api/rates)",
        gt=0,
        le=0xFFFFFFFF,
    )


def _optional_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest(f"{name} must be epoch seconds")
    return int(raw)


def _telemetry(request: web.Request) -> TelemetryService:
    return request.app[TELEMETRY]


async def get_end_device_readings(request: web.Request) -> web.Response:
    """Readings per ReadingType, newest first, values exact with their physical value."""
    device = await _svc(request).end_device(request.match_info["lfdi"])
    since = _optional_query(request, "since")
    until = _optional_query(request, "until")
    limit = _int_query(request, "limit", 1000, 100_000)
    return _json(await _telemetry(request).device_readings(device, since, until, limit))


async def get_end_device_mups(request: web.Request) -> web.Response:
    device = await _svc(request).end_device(request.match_info["lfdi"])
    return _json(await _telemetry(request).device_mups(device))


async def delete_end_device_mups(request: web.Request) -> web.Response:
    device = await _svc(request).end_device(request.match_info["lfdi"])
    return _json({"removed": await _telemetry(request).delete_for_devices([device])})


async def delete_aggregator_mups(request: web.Request) -> web.Response:
    svc = _svc(request)
    _, devices = await svc.end_devices(0, 2**31 - 1, request.match_info["name"])
    return _json({"removed": await _telemetry(request).delete_for_devices(devices)})


async def put_end_device_post_rate(request: web.Request) -> web.Response:
    body = await parse_json(request, PostRateIn)
    svc = _svc(request)
    device = await svc.end_device(request.match_info["lfdi"])
    updated = await _telemetry(request).set_post_rate(device, body.post_rate)
    return _json(end_device_json(updated, await svc.aggregator_names()))


# ---- audit log (issue 13) -----------------------------------------------------------------
async def _audit_api(request: web.Request, status: int) -> None:
    """A change through the admin API, in the same log as the console's: the token holder
    is "admin-api"; the path names what changed (the request body is not kept: it may hold
    secrets)."""
    operators = request.app.get(AUDIT)
    if operators is None:
        return
    try:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        await operators.audit(
            "admin-api", f"{request.method} {route}"[:64], request.path, None, {"status": status}
        )
    except Exception:  # the change is made; a lost audit line is logged, never a 500
        log.exception("admin %s %s: audit entry not written", request.method, safe(request.path))


async def get_audit(request: web.Request) -> web.Response:
    operators = request.app.get(AUDIT)
    if operators is None:
        raise BadRequest("the audit log needs the console's services")
    offset = _int_query(request, "offset", 0, 2**31)
    limit = _int_query(request, "limit", 100, 1000)
    total, entries = await operators.audit_log(offset, limit, request.query.get("operator"))
    return _json({"total": total, "offset": offset, "items": [audit_json(e) for e in entries]})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    ok: int = 200
    #: Query parameters: (name, JSON schema type, description), for /openapi.json.
    query: tuple[tuple[str, str, str], ...] = ()


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/status", get_status, "Server version, profile, schemas, counts"),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics, text format (README Metrics)"),
    Route(
        "GET", "/api/end-devices", list_end_devices, "List EndDevices (offset, limit, aggregator)"
    ),
    Route(
        "POST",
        "/api/end-devices",
        bulk_preregister,
        "Pre-register many EndDevices (JSON array)",
        EndDeviceIn,
        201,
    ),
    Route("GET", "/api/end-devices/{lfdi}", get_end_device, "Inspect one EndDevice"),
    Route(
        "PUT",
        "/api/end-devices/{lfdi}",
        put_end_device,
        "Pre-register or update an EndDevice",
        EndDeviceIn,
    ),
    Route(
        "DELETE",
        "/api/end-devices/{lfdi}",
        delete_end_device,
        "Delete an EndDevice and all under it",
        ok=204,
    ),
    Route("GET", "/api/aggregators", list_aggregators, "List aggregators"),
    Route("POST", "/api/aggregators", post_aggregator, "Create an aggregator", AggregatorIn, 201),
    Route("GET", "/api/aggregators/{name}", get_aggregator, "Inspect an aggregator"),
    Route("DELETE", "/api/aggregators/{name}", delete_aggregator, "Delete an aggregator", ok=204),
    Route(
        "GET",
        "/api/aggregators/{name}/notification-hosts",
        get_notification_hosts,
        "The aggregator's notification host allow-list",
    ),
    Route(
        "PUT",
        "/api/aggregators/{name}/notification-hosts",
        put_notification_hosts,
        "Set the hosts the aggregator's notifications may go to ([] = global rules)",
        NotificationHostsIn,
    ),
    Route(
        "GET",
        "/api/aggregators/{name}/certificates",
        list_aggregator_certificates,
        "Certificates attached to an aggregator",
    ),
    Route(
        "PUT",
        "/api/aggregators/{name}/certificates/{lfdi}",
        put_aggregator_certificate,
        "Attach a certificate (optional expiry)",
        CertificateAttachIn,
    ),
    Route(
        "DELETE",
        "/api/aggregators/{name}/certificates/{lfdi}",
        delete_aggregator_certificate,
        "Detach a certificate",
        ok=204,
    ),
    Route("GET", "/api/certificates", list_certificates, "Certificates the utility has recorded"),
    Route(
        "PUT",
        "/api/certificates/{lfdi}",
        put_certificate,
        "Disable or re-enable a certificate",
        CertificateStateIn,
    ),
    Route("GET", "/api/rates", get_rates, "Current pollRates and default postRate"),
    Route("PUT", "/api/rates", put_rates, "Set pollRates and/or the default postRate", RatesIn),
    Route("GET", "/api/clock", get_clock, "The server clock"),
    Route("PUT", "/api/clock", put_clock, "Set, advance or reset the server clock", ClockIn),
    Route("POST", "/api/reset", post_reset, "Remove all lab state for a clean start"),
    Route(
        "GET",
        "/api/audit",
        get_audit,
        "Audit log, newest first: who changed what, when, before and after",
        query=(
            ("offset", "integer", "entries to skip"),
            ("limit", "integer", "entries to return (at most 1000)"),
            ("operator", "string", "only this operator's changes ('admin-api' for the API)"),
        ),
    ),
    # ---- OpenADR 3 VTN clients (issue 4) ----
    Route("GET", "/api/vtn/clients", admin_list_vtn_clients, "OAuth2 clients of the VTN"),
    Route(
        "POST",
        "/api/vtn/clients",
        admin_create_vtn_client,
        "Create a VTN client (BL or VEN); the answer holds its secret, shown once",
        VtnClientIn,
        201,
    ),
    Route(
        "DELETE",
        "/api/vtn/clients/{name}",
        admin_delete_vtn_client,
        "Remove a VTN client (its tokens stop working within a minute)",
        ok=204,
    ),
    Route(
        "GET",
        "/api/end-devices/{lfdi}/der",
        get_end_device_der,
        "DER capability, settings, status, availability of a device (values as posted)",
    ),
    Route(
        "GET",
        "/api/end-devices/{lfdi}/log-events",
        get_end_device_log_events,
        "LogEvents a device posted, newest first (offset, limit)",
    ),
    # ---- telemetry (issue 3 item 6) ----
    Route(
        "GET",
        "/api/end-devices/{lfdi}/readings",
        get_end_device_readings,
        "Readings a device mirrored, per ReadingType, newest first (since, until, limit)",
    ),
    Route(
        "GET",
        "/api/end-devices/{lfdi}/mirror-usage-points",
        get_end_device_mups,
        "MirrorUsagePoints of a device with their ReadingTypes and postRate",
    ),
    Route(
        "DELETE",
        "/api/end-devices/{lfdi}/mirror-usage-points",
        delete_end_device_mups,
        "Delete all MirrorUsagePoints (and readings) of a device",
    ),
    Route(
        "DELETE",
        "/api/aggregators/{name}/mirror-usage-points",
        delete_aggregator_mups,
        "Delete all MirrorUsagePoints (and readings) of an aggregator's devices",
    ),
    Route(
        "PUT",
        "/api/end-devices/{lfdi}/post-rate",
        put_end_device_post_rate,
        "Set (or clear with null) a device's postRate",
        PostRateIn,
    ),
)


def all_routes() -> tuple[Route, ...]:
    """The foundation's routes and those of each function set's admin module."""
    from csip.web import admin_engine, admin_fleet, admin_messaging, admin_programs

    return (
        ROUTES
        + admin_programs.routes()
        + admin_engine.routes()
        + admin_messaging.routes()
        + admin_fleet.routes()
    )


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of ROUTES (request schemas come from the pydantic models)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    error_schema = {"schema": {"$ref": "#/components/schemas/Error"}}
    error = {"description": "error", "content": {"application/json": error_schema}}
    for route in all_routes():
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "security": [{"bearer": []}],
            "responses": {
                str(route.ok): {"description": "success"},
                "400": error,
                "401": error,
                "404": error,
                "409": error,
            },
        }
        params = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ] + [
            {"name": name, "in": "query", "description": text, "schema": {"type": kind}}
            for name, kind, text in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            name = route.body.__name__
            model_schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(model_schema.pop("$defs", {}))  # nested models, e.g. ControlIn
            schemas[name] = model_schema
            ref: dict[str, Any] = {"$ref": f"#/components/schemas/{name}"}
            if route.handler is bulk_preregister:
                ref = {"type": "array", "items": ref}
            operation["requestBody"] = {
                "required": route.method != "GET",
                "content": {"application/json": {"schema": ref}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "status": {"type": "integer"},
            "title": {"type": "string"},
            "detail": {"type": "string"},
        },
        "required": ["status", "title", "detail"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "csip admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth (except for the OpenAPI document); errors as JSON, never internals."""
    if request.path == CONSOLE_PREFIX or request.path.startswith(CONSOLE_PREFIX + "/"):
        return await handler(request)
    try:
        if request.path != "/openapi.json":
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not await _svc(request).token_matches(token.strip()):
                raise Unauthorized("send Authorization: Bearer <token> (see `csip admin token`)")
        for name in ID_PARAMS.intersection(request.match_info):
            path_id(request, name)  # 404 for an id no table can hold, before the body is read
        response = await handler(request)
        if request.method not in ("GET", "HEAD") and response.status < 400:
            await _audit_api(request, response.status)
        return response
    except CsipError as exc:
        body = {"status": exc.status, "title": type(exc).__name__, "detail": exc.detail}
        response = _json(body, exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if exc.status in limits.CLOSING:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"status": exc.status, "title": exc.reason, "detail": exc.reason}
        response = _json(body, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if limits.client_gone(exc):
            log.info("admin %s %s: client gone: %s", request.method, safe(request.path), safe(exc))
            response = _json({"status": 400, "title": "BadRequest", "detail": "cut short"}, 400)
            response.force_close()
            return response
        log.exception("admin %s %s failed", request.method, safe(request.path))
        return _json({"status": 500, "title": "Internal", "detail": "see the server log"}, 500)


def create_app(
    service: AdminService,
    programs: ProgramService,
    der_device: DerDeviceService,
    telemetry: TelemetryService,
    vtn_auth: VtnAuth,
    engine: EngineService,
    vtn: VtnService,
    settlement: SettlementService,
    messaging: MessagingService,
    fleet: FleetService,
    console: ConsoleService | None = None,
) -> web.Application:
    """The admin face over services built elsewhere (csip.app.build)."""
    from csip.web.admin_engine import ENGINE, SETTLEMENT, VTN
    from csip.web.admin_fleet import FLEET
    from csip.web.admin_messaging import MESSAGING_ADMIN
    from csip.web.admin_programs import PROGRAM_ADMIN

    app = web.Application(middlewares=[admin_middleware], client_max_size=limits.ADMIN_MAX_BODY)
    app[limits.FACE] = "admin"
    app[ADMIN] = service
    app[DER_DEVICE] = der_device
    app[TELEMETRY] = telemetry
    app[VTN_AUTH] = vtn_auth
    app[PROGRAM_ADMIN] = programs
    app[ENGINE] = engine
    app[VTN] = vtn
    app[SETTLEMENT] = settlement
    app[MESSAGING_ADMIN] = messaging
    app[FLEET] = fleet
    document = openapi_document()

    async def get_openapi(_request: web.Request) -> web.Response:
        return _json(document)

    app.router.add_get("/openapi.json", get_openapi)
    for route in all_routes():
        app.router.add_route(route.method, route.path, route.handler)
    if console is not None:  # the operator console (issue 13), its own auth
        from csip.web import console as console_face

        app[AUDIT] = console.operators
        app.router.add_get("/console", _to_console)
        app.add_subapp(console_face.PREFIX, console_face.create_app(console, console.operators))
    return app


async def _to_console(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/")
