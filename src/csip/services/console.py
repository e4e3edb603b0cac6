"""What the operator console shows and the changes it makes (issue 13 item 1).

The console's handlers (web/console/) only route and render; the work is here, composed of
the services the admin API and the protocol faces already use, so a page shows exactly what
a device, a VEN or the admin API would see. Every change goes through the same use case the
admin API calls (events through `VtnService`, as `web/admin_engine.py`'s post_event does), and
its audit entry (who, what, when, before and after) is written by that use case inside the
change's own transaction: no crash between the two can lose the entry.

Scale: the fleet page reads every device's summary row (one query per kind of fact) and
filters in memory. That is instant for a lab or pilot (thousands of devices) and the reason
the page shows at most `PAGE` rows; a fleet of hundreds of thousands wants SQL-side filters
(noted in the README).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from csip.conformance import results as conformance_results
from csip.domain import report_requests
from csip.domain.delivery import Delivery, deliveries
from csip.domain.der import Control, Group, event_statuses, is_over
from csip.domain.devices import EndDevice
from csip.domain.fleet import DerFacts
from csip.domain.groups import descendants
from csip.domain.operators import Audit, Operator
from csip.errors import BadRequest, NotFound
from csip.openadr import convert, rules
from csip.openadr.rules import EVENT, PROGRAM, SUBSCRIPTION, VEN, Principal
from csip.services.der_device import DerDeviceService
from csip.services.engine import EngineService
from csip.services.fleet import CapacityReport, FleetService
from csip.services.operators import OperatorService
from csip.services.programs import ProgramService
from csip.services.settlement import Settlement, SettlementService
from csip.services.telemetry import TelemetryService
from csip.services.vtn import VtnService
from csip.services.vtn_auth import VtnAuth
from csip.store import console as console_store
from csip.store import der as der_store
from csip.store import engine as engine_store
from csip.store import engine_reports as reports_store
from csip.store import fleet as fleet_store
from csip.store import openadr as oadr
from csip.store.store import select_certificates

#: Rows on one fleet page.
PAGE = 50
#: DERCapability `type` (DERType) codes, as 2030.5 names them.
DER_TYPES = {
    0: "not applicable",
    1: "virtual or mixed",
    2: "reciprocating engine",
    3: "fuel cell",
    4: "photovoltaic",
    5: "combined heat and power",
    6: "other generation",
    80: "storage",
    81: "electric vehicle",
    82: "EVSE",
    83: "PV + storage",
}
#: Payload types the event form offers (OpenADR 3.1 names).
PAYLOAD_TYPES = (
    "SIMPLE",
    "DISPATCH_SETPOINT",
    "IMPORT_CAPACITY_LIMIT",
    "EXPORT_CAPACITY_LIMIT",
    "CHARGE_STATE_SETPOINT",
    "PRICE",
)
_SEP = "{urn:ieee:std:2030.5:ns}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _console_principal(operator: Operator) -> Principal:
    """The operator acts as a business-logic client with every scope the console uses."""
    return Principal(
        f"console:{operator.name}",
        "bl",
        frozenset({"read_all", "write_programs", "write_events", "write_reports", "write_vens"}),
    )


READER = Principal("console", "bl", frozenset({"read_all"}))


def iso(epoch: int | float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(root: etree._Element | None, name: str) -> str | None:
    if root is None:
        return None
    found = root.find(_SEP + name)
    return None if found is None or found.text is None else found.text.strip()


def _parse(xml: bytes | None) -> etree._Element | None:
    if not xml:
        return None
    try:
        return etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError:
        return None


@dataclass(frozen=True)
class FleetQuery:
    search: str = ""
    oem: str = ""
    der_class: str = ""
    group: int | None = None
    aggregator: str = ""
    page: int = 0


@dataclass
class FleetRow:
    device_id: int
    lfdi: str
    sfdi: int
    href: str
    aggregator: str
    groups: list[str]
    oem: str
    der_class: str
    last_seen: int | None
    soc: float | None
    reserve: float | None
    alarms: int
    certificate: str


@dataclass
class FleetPage:
    total: int
    rows: list[FleetRow]
    oems: list[str]
    classes: list[str]
    groups: list[Group]
    aggregators: list[str]
    pages: int


@dataclass
class TimelineEvent:
    id: str
    name: str
    start: int | None
    end: int | None
    status: str
    targets: list[str]
    payloads: list[str]
    created_at: float
    deleted_at: float | None


@dataclass
class ProgramTimeline:
    id: str
    name: str
    enrolled: list[tuple[int, str]]
    events: list[TimelineEvent] = field(default_factory=list)


@dataclass(frozen=True)
class EventDelivery:
    """An event's requested vs delivered kW, per interval, over the groups it reached."""

    event_id: str
    name: str
    groups: list[str]
    devices: int
    intervals: tuple[Delivery, ...]


@dataclass
class EventForm:
    """What the event form posts, as typed; `problems` says what to fix, per field."""

    program: str = ""
    name: str = ""
    start: str = ""
    duration_minutes: str = "60"
    intervals: str = "1"
    payload_type: str = "SIMPLE"
    values: str = "1"
    targets: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, form: Mapping[str, Any], targets: Sequence[str]) -> EventForm:
        return cls(
            program=str(form.get("program", "")).strip(),
            name=str(form.get("name", "")).strip(),
            start=str(form.get("start", "")).strip(),
            duration_minutes=str(form.get("duration_minutes", "")).strip(),
            intervals=str(form.get("intervals", "1")).strip() or "1",
            payload_type=str(form.get("payload_type", "")).strip(),
            values=str(form.get("values", "")).strip(),
            targets=[t for t in targets if t],
        )

    def body(self, now: int) -> dict[str, Any]:
        """The OpenADR event JSON, or BadRequest with `problems` filled in."""
        problems: dict[str, str] = {}
        if not self.program:
            problems["program"] = "choose the program the event belongs to"
        if len(self.name) > 128:
            problems["name"] = "an event name is at most 128 characters"
        start: int | None = None
        try:
            parsed = datetime.fromisoformat(self.start.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            start = int(parsed.timestamp())
        except ValueError:
            problems["start"] = "enter the start as a UTC date and time, e.g. 2026-12-01T17:00"
        minutes = _positive_int(self.duration_minutes)
        if minutes is None or minutes > 7 * 24 * 60:
            problems["duration_minutes"] = "each interval lasts 1 to 10080 whole minutes"
        count = _positive_int(self.intervals)
        if count is None or count > 96:
            problems["intervals"] = "1 to 96 intervals"
        if self.payload_type not in PAYLOAD_TYPES:
            problems["payload_type"] = "choose one of " + ", ".join(PAYLOAD_TYPES)
        values: list[float] = []
        for part in (p.strip() for p in self.values.split(",")):
            try:
                values.append(float(part))
            except ValueError:
                problems["values"] = f"{part!r} is not a number: give numbers separated by commas"
                break
        if not values and "values" not in problems:
            problems["values"] = "give at least one value"
        if count is not None and len(values) not in (1, count) and "values" not in problems:
            problems["values"] = f"give one value, or one per interval ({count})"
        if self.payload_type == "SIMPLE" and any(v not in (0, 1, 2, 3) for v in values):
            problems["values"] = "SIMPLE levels are 0, 1, 2 or 3"
        if start is not None and minutes is not None and start + minutes * 60 <= now:
            problems["start"] = "the event would be over already: choose a later start"
        if problems:
            self.problems = problems
            raise BadRequest("; ".join(f"{k}: {v}" for k, v in problems.items()))
        assert start is not None and minutes is not None and count is not None
        per = values if len(values) == count else values * count
        body: dict[str, Any] = {
            "objectType": "EVENT",
            "programID": self.program,
            "intervalPeriod": {"start": iso(start), "duration": f"PT{minutes}M"},
            "intervals": [
                {
                    "id": i,
                    "payloads": [
                        {
                            "type": self.payload_type,
                            "values": [int(v) if v.is_integer() else v for v in [per[i]]],
                        }
                    ],
                }
                for i in range(count)
            ],
        }
        if self.name:
            body["eventName"] = self.name
        if self.targets:
            body["targets"] = list(self.targets)
        return body

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> EventForm:
        period = event.get("intervalPeriod") or {}
        intervals = event.get("intervals") or []
        seconds = rules.parse_duration(str(period.get("duration", "PT60M"))) or 3600
        payloads = [i.get("payloads", [{}])[0] for i in intervals] or [{}]
        return cls(
            program=str(event.get("programID", "")),
            name=str(event.get("eventName") or ""),
            start=str(period.get("start", ""))[:16],
            duration_minutes=str(int(seconds // 60)),
            intervals=str(len(intervals) or 1),
            payload_type=str(payloads[0].get("type", "SIMPLE")),
            values=", ".join(
                str((p.get("values") or [""])[0]) for p in payloads if p.get("values")
            ),
            targets=[str(t) for t in event.get("targets") or []],
        )


def _positive_int(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None


def event_status(
    event: Mapping[str, Any], deleted: bool, control_states: Sequence[str], now: int
) -> tuple[str, int | None, int | None]:
    """(status, start, end) of an event on the timeline: cancelled once deleted; superseded
    when every control it became was superseded; else by its time."""
    try:
        start = rules.parse_datetime(str((event.get("intervalPeriod") or {}).get("start", "")))
    except (TypeError, ValueError):
        start = None
    end = rules.event_end(dict(event))
    begin = None if start is None else int(start)
    finish = None if end is None else int(end)
    if deleted:
        return "cancelled", begin, finish
    if control_states and all(s == "superseded" for s in control_states):
        return "superseded", begin, finish
    if begin is None or finish is None:
        return "scheduled", begin, finish
    if now < begin:
        return "scheduled", begin, finish
    if now < finish:
        return "active", begin, finish
    return "done", begin, finish


class ConsoleService:
    def __init__(
        self,
        programs: ProgramService,
        engine: EngineService,
        vtn: VtnService,
        vtn_auth: VtnAuth,
        fleet: FleetService,
        settlement: SettlementService,
        der_device: DerDeviceService,
        telemetry: TelemetryService,
        operators: OperatorService,
    ) -> None:
        self.programs = programs
        self.sep2 = programs.sep2
        self.store = programs.sep2.store
        self.clock = programs.clock
        self.engine = engine
        self.vtn = vtn
        self.vtn_auth = vtn_auth
        self.fleet = fleet
        self.settlement = settlement
        self.der_device = der_device
        self.telemetry = telemetry
        self.operators = operators
        self.results_dir = Path(self.sep2.settings.conformance_results_dir)

    def now(self) -> int:
        return self.clock.now_int()

    # ---- fleet ---------------------------------------------------------------------------
    async def fleet_page(self, query: FleetQuery) -> FleetPage:
        now = self.now()
        default = await self.sep2.default_post_rate()
        async with self.store.transaction() as s:
            groups = await der_store.select_groups(s)
            aggregators = {a.id: a.name for a in await self.store.list_aggregators()}
            _, devices = await self.store.page_end_devices(start=0, limit=2**31 - 1)
            devices = [d for d in devices if not d.aggregator_self]
            ids = [d.id for d in devices]
            memberships = await der_store.select_memberships(s, ids)
            info = await console_store.select_documents(s, ids, "di")
            caps = await console_store.select_documents(s, ids, "dercap")
            certs = {c.lfdi: c for c in await select_certificates(s)}
            if query.group is not None and query.group in groups:
                wanted = descendants(groups, query.group)
                devices = [d for d in devices if memberships.get(d.id, set()) & wanted]
            if query.aggregator:
                devices = [
                    d for d in devices if aggregators.get(d.aggregator_id or 0) == query.aggregator
                ]
            rows_all = [
                self._row(d, aggregators, groups, memberships, info, caps, certs, now)
                for d in devices
            ]
            oems = sorted({r.oem for r in rows_all if r.oem})
            classes = sorted({r.der_class for r in rows_all if r.der_class})
            if query.search:
                needle = query.search.lower()
                rows_all = [
                    r
                    for r in rows_all
                    if needle in r.lfdi.lower()
                    or needle in str(r.sfdi)
                    or needle in r.oem.lower()
                    or any(needle in g.lower() for g in r.groups)
                ]
            if query.oem:
                rows_all = [r for r in rows_all if r.oem == query.oem]
            if query.der_class:
                rows_all = [r for r in rows_all if r.der_class == query.der_class]
            total = len(rows_all)
            pages = max(1, (total + PAGE - 1) // PAGE)
            page = min(max(0, query.page), pages - 1)
            rows = rows_all[page * PAGE : (page + 1) * PAGE]
            page_ids = [r.device_id for r in rows]
            facts = {
                f.device_id: f
                for f in await fleet_store.select_der_facts(
                    s, device_ids=page_ids, default_post_rate=default
                )
            }
            seen = await console_store.select_document_times(s, page_ids)
            alarms = await console_store.count_log_events(s, page_ids)
        for row in rows:
            found = facts.get(row.device_id)
            if found is not None:
                row.soc = found.soc_percent
                row.reserve = _reserve(found)
            row.last_seen = _last_seen(found, seen.get(row.device_id))
            row.alarms = alarms.get(row.device_id, 0)
        return FleetPage(
            total,
            rows,
            oems,
            classes,
            sorted(groups.values(), key=lambda g: g.id),
            sorted(aggregators.values()),
            pages,
        )

    def _row(
        self,
        device: EndDevice,
        aggregators: Mapping[int, str],
        groups: Mapping[int, Group],
        memberships: Mapping[int, set[int]],
        info: Mapping[int, bytes],
        caps: Mapping[int, bytes],
        certs: Mapping[str, Any],
        now: int,
    ) -> FleetRow:
        di = _parse(info.get(device.id))
        oem = _text(di, "mfInfo") or _text(di, "mfModel") or ""
        cap = _parse(caps.get(device.id))
        kind = _text(cap, "type")
        der_class = DER_TYPES.get(int(kind), f"type {kind}") if kind and kind.isdigit() else ""
        return FleetRow(
            device.id,
            device.lfdi,
            device.sfdi,
            device.href,
            aggregators.get(device.aggregator_id or 0, ""),
            [groups[g].description for g in sorted(memberships.get(device.id, ())) if g in groups],
            oem,
            der_class,
            None,
            None,
            None,
            0,
            _certificate_state(device, certs.get(device.lfdi), now),
        )

    async def device(self, lfdi: str) -> dict[str, Any]:
        """One device's page: summary, DER facts, documents, readings, controls received,
        its responses and its LogEvents."""
        device = await self.sep2.store.get_end_device_by_lfdi(lfdi.upper())
        if device is None:
            raise NotFound(f"no EndDevice with lFDI {lfdi}")
        now = self.now()
        _, facts = await self.fleet.facts(device.lfdi)
        async with self.store.transaction() as s:
            groups = await der_store.select_groups(s)
            direct = (await der_store.select_memberships(s, [device.id])).get(device.id, set())
            closure: set[int] = set()
            for gid in direct:
                node: int | None = gid
                while node is not None and node in groups and node not in closure:
                    closure.add(node)
                    node = groups[node].parent_id
            programs = [p for g in sorted(closure) for p in await der_store.select_programs(s, g)]
            by_program = await der_store.select_controls_by_program(s, [p.id for p in programs])
            responses = await der_store.select_responses(s, device_id=device.id, limit=200)
            documents = {
                kind: xml
                for kind in ("di", "dstat", "ps", "dercap", "derg", "ders", "dera")
                if (
                    xml := (await console_store.select_documents(s, [device.id], kind)).get(
                        device.id
                    )
                )
            }
        controls: list[dict[str, Any]] = []
        for program in programs:
            statuses = event_statuses(by_program.get(program.id, []), now)
            for control in by_program.get(program.id, []):
                controls.append(_control_row(control, program.description, statuses, now))
        controls.sort(key=lambda c: c["start"], reverse=True)
        readings = await self.telemetry.device_readings(device, now - 86400, None, 5000)
        log_events = await self.der_device.log_events_json(device, 0, 50)
        return {
            "device": device,
            "facts": facts,
            "reserve": _reserve(facts),
            "groups": [groups[g] for g in sorted(direct) if g in groups],
            "documents": {k: _pretty(v) for k, v in documents.items()},
            "readings": readings,
            "controls": controls,
            "responses": responses,
            "log_events": log_events,
        }

    # ---- programs and events -------------------------------------------------------------
    async def timelines(self) -> list[ProgramTimeline]:
        now = self.now()
        found: list[ProgramTimeline] = []
        async with self.store.transaction() as s:
            groups = await der_store.select_groups(s)
            for program in await oadr.query(s, PROGRAM):
                enrolled = await engine_store.select_enrollments(s, program.id)
                timeline = ProgramTimeline(
                    program.id,
                    str(program.body.get("programName") or program.id),
                    [
                        (
                            e.group_id,
                            groups[e.group_id].description if e.group_id in groups else "?",
                        )
                        for e in enrolled
                    ],
                )
                for event in await console_store.select_event_history(s, program.id):
                    states = await self._control_states(s, event.id, now)
                    status, start, end = event_status(
                        event.body, event.deleted_at is not None, states, now
                    )
                    timeline.events.append(
                        TimelineEvent(
                            event.id,
                            str(event.body.get("eventName") or event.id),
                            start,
                            end,
                            status,
                            [str(t) for t in event.body.get("targets") or []],
                            sorted(
                                {
                                    str(p.get("type"))
                                    for i in event.body.get("intervals") or []
                                    for p in i.get("payloads") or []
                                }
                            ),
                            event.created_at,
                            event.deleted_at,
                        )
                    )
                found.append(timeline)
        return found

    async def _control_states(self, s: Any, event_id: str, now: int) -> list[str]:
        links = await engine_store.select_engine_controls(s, event_id)
        if not links:
            return []
        programs = sorted({link.control.program_id for link in links})
        statuses: dict[int, Any] = {}
        for controls in (await der_store.select_controls_by_program(s, programs)).values():
            statuses.update(event_statuses(controls, now))
        return [
            statuses[link.control.id].current.name.lower()
            for link in links
            if link.control.id in statuses
        ]

    async def event(self, event_id: str) -> dict[str, Any]:
        """An event as stored (deleted ones too), its status, per-group mapping and who
        answered what."""
        now = self.now()
        async with self.store.transaction() as s:
            stored = await console_store.select_event(s, event_id)
            if stored is None:
                raise NotFound(f"no event {event_id!r}")
            states = await self._control_states(s, event_id, now)
            links = await engine_store.select_engine_controls(s, event_id)
            answers: list[dict[str, Any]] = []
            for link in links:
                answers += await der_store.select_responses(
                    s, program_id=link.control.program_id, limit=500
                )
            control_ids = {link.control.id for link in links}
            answers = [a for a in answers if a["control"] in control_ids]
        status, start, end = event_status(stored.body, stored.deleted_at is not None, states, now)
        mapping = await self.engine.mapping(event_id)
        return {
            "event": stored.body | {"id": stored.id},
            "deleted": stored.deleted_at is not None,
            "status": status,
            "start": start,
            "end": end,
            "mapping": mapping,
            "answers": sorted(answers, key=lambda a: a["received_at"], reverse=True),
        }

    async def program_choices(self) -> list[tuple[str, str]]:
        async with self.store.transaction() as s:
            return [
                (p.id, str(p.body.get("programName") or p.id)) for p in await oadr.query(s, PROGRAM)
            ]

    async def target_names(self) -> list[str]:
        groups = await self.programs.groups()
        return sorted(g.target for g in groups.values() if g.target)

    async def create_event(self, operator: Operator, form: EventForm) -> str:
        """The event and its audit entry, in one unit of work (VtnService writes both)."""
        OperatorService.require_change(operator)
        body = form.body(self.now())
        created = json.loads(
            await self.vtn.create(
                _console_principal(operator),
                EVENT,
                json.dumps(body).encode(),
                audit=Audit(operator.name, "event.create"),
            )
        )
        return str(created["id"])

    async def update_event(self, operator: Operator, event_id: str, form: EventForm) -> None:
        OperatorService.require_change(operator)
        body = form.body(self.now())
        await self.vtn.update(
            _console_principal(operator),
            EVENT,
            event_id,
            json.dumps(body).encode(),
            audit=Audit(operator.name, "event.update"),
        )

    async def cancel_event(self, operator: Operator, event_id: str) -> None:
        """Cancel: the event leaves the OpenADR view; its 2030.5 controls show Cancelled."""
        OperatorService.require_change(operator)
        audit = Audit(operator.name, "event.cancel")
        await self.vtn.delete(_console_principal(operator), EVENT, event_id, audit=audit)

    # ---- capacity and settlement -----------------------------------------------------------
    async def capacity(
        self, *, group: int | None = None, aggregator: str | None = None, program: str | None = None
    ) -> CapacityReport:
        return await self.fleet.capacity(
            group_id=group, aggregator=aggregator, openadr_program=program
        )

    async def delivery(self, event_id: str) -> EventDelivery:
        """Per interval, what the event asked of the groups it reached beside what their
        devices delivered (domain/delivery.py says how each figure is made)."""
        now = self.now()
        async with self.store.transaction() as s:
            stored = await console_store.select_event(s, event_id)
            if stored is None:
                raise NotFound(f"no event {event_id!r}")
            program = await oadr.get(s, PROGRAM, stored.program_id or "")
            event = convert.event(
                stored.body | {"id": stored.id},
                None if program is None else program.body,
                int(stored.modified_at),
            )
            choices = await engine_store.select_choices(s, stored.program_id or "")
            groups = await der_store.select_groups(s)
            reached = [
                g for g in await reports_store.select_reached_groups(s, event_id) if g in groups
            ]
            tree = report_requests.descendants(
                {g.id: g.parent_id for g in groups.values()}, reached
            )
            members = await reports_store.select_members(
                s, {x for below in tree.values() for x in below}
            )
            device_ids = sorted({d for found in members.values() for d in found})
            raw = []
            if device_ids and event.start is not None and event.end is not None:
                until = min(event.end, now + 1)
                if until > event.start:
                    raw = await reports_store.select_power_and_charge(
                        s, device_ids, event.start, until
                    )
        intervals = deliveries(
            event,
            dispatch=choices.dispatch if choices is not None else "group",
            simple_levels=choices.simple_levels if choices is not None else {},
            groups=len(reached),
            device_ids=device_ids,
            samples=report_requests.samples(raw),
            now=now,
        )
        return EventDelivery(
            event_id,
            event.name,
            [groups[g].description for g in reached],
            len(device_ids),
            intervals,
        )

    async def latest_delivery(
        self, events: Sequence[TimelineEvent], look: int = 5
    ) -> EventDelivery | None:
        """What the capacity page plots when no event is asked for: of the `look` events
        begun last, the newest that asked for power, else the newest."""
        newest = sorted(events, key=lambda e: (e.start or 0, e.created_at), reverse=True)
        first = None
        for event in newest[:look]:
            found = await self.delivery(event.id)
            if any(d.requested_kw is not None for d in found.intervals):
                return found
            first = first or found
        return first

    async def settle(self, event_id: str) -> Settlement:
        return await self.settlement.settle(event_id)

    async def settleable_events(self) -> list[TimelineEvent]:
        now = self.now()
        return [
            e
            for t in await self.timelines()
            for e in t.events
            if e.deleted_at is None and e.start is not None and e.start <= now
        ]

    # ---- conformance ---------------------------------------------------------------------
    def campaigns(self) -> list[tuple[str, conformance_results.Campaign]]:
        found: list[tuple[str, conformance_results.Campaign]] = []
        if not self.results_dir.is_dir():
            return found
        for path in sorted(self.results_dir.glob("*/results.json"), reverse=True)[:20]:
            try:
                found.append((path.parent.name, conformance_results.load(path)))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found

    def campaign(self, name: str) -> conformance_results.Campaign:
        if not name or "/" in name or name.startswith("."):
            raise NotFound("no such campaign")
        path = self.results_dir / name / "results.json"
        try:
            return conformance_results.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NotFound(f"no campaign {name!r}") from exc

    # ---- VTN -----------------------------------------------------------------------------
    async def vtn_overview(self) -> dict[str, Any]:
        clients = await self.vtn_auth.clients()
        async with self.store.transaction() as s:
            vens = await oadr.query(s, VEN)
            subscriptions = await oadr.query(s, SUBSCRIPTION)
            outbox = await console_store.select_outbox_summary(s)
            failures = await console_store.select_outbox_failures(s)
            groups = await der_store.select_groups(s)
        return {
            "clients": clients,
            "vens": [
                {
                    "id": v.id,
                    "name": v.body.get("venName") or v.name,
                    "client": v.client_id,
                    "targets": [str(t) for t in v.body.get("targets") or []],
                    "created": v.created_at,
                }
                for v in vens
            ],
            "subscriptions": [
                {
                    "id": sub.id,
                    "client": sub.client_id,
                    "name": sub.body.get("clientName"),
                    "program": sub.program_id,
                    "callbacks": [
                        (o.get("callbackUrl"), ", ".join(o.get("objectOperations") or []))
                        for o in _operations(sub.body)
                    ],
                }
                for sub in subscriptions
            ],
            "outbox": outbox,
            "failures": failures,
            "targets": sorted((g.target, g.description) for g in groups.values() if g.target),
        }


def _operations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for operation in body.get("objectOperations") or []:
        found.append(
            {
                "callbackUrl": operation.get("callbackUrl"),
                "objectOperations": [
                    *[str(o) for o in operation.get("objects") or []],
                    *[str(o) for o in operation.get("operations") or []],
                ],
            }
        )
    return found


def _reserve(facts: DerFacts | None) -> float | None:
    if facts is None:
        return None
    candidates = [v for v in (facts.reserve_percent, facts.site_reserve_percent) if v is not None]
    return max(candidates) if candidates else None


def _last_seen(facts: DerFacts | None, document_at: int | None) -> int | None:
    times = [document_at] if document_at is not None else []
    if facts is not None:
        times += [
            t
            for t in (
                facts.capability_at,
                facts.settings_at,
                facts.status_at,
                facts.availability_at,
                facts.w_at,
                facts.soc_at_reading,
            )
            if t is not None
        ]
    return max(times) if times else None


def _certificate_state(device: EndDevice, cert: Any, now: int) -> str:
    if not device.enabled:
        return "device disabled"
    if cert is None:
        return "valid"
    if not cert.enabled:
        return "disabled"
    if cert.expires_at is not None and cert.expires_at <= now:
        return "expired"
    return "valid"


def _control_row(
    control: Control, program: str, statuses: Mapping[int, Any], now: int
) -> dict[str, Any]:
    status = statuses.get(control.id)
    name = status.current.name.lower() if status is not None else "unknown"
    if name in ("scheduled", "active") and is_over(control, now):
        name = "completed"
    return {
        "id": control.id,
        "href": control.href,
        "mrid": control.mrid,
        "program": program,
        "description": control.description,
        "start": control.start,
        "duration": control.duration,
        "base": dict(control.base),
        "status": name,
    }


def _pretty(xml: bytes) -> str:
    root = _parse(xml)
    if root is None:
        return xml.decode("utf-8", "replace")
    etree.indent(root)
    return etree.tostring(root, encoding="unicode")
