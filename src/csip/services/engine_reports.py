"""What 2030.5 devices answer comes back to the utility as OpenADR reports (issue 10 item 5).

For every OpenADR event whose ``reportDescriptors`` ask for reports (domain.report_requests),
csip writes one report on the event as its own client (clientID ``csip``, which no token may
carry): one resource per enrolled 2030.5 group the event reached (named by the group's
target, or ``group-<id>``), one interval per event interval begun so far, with the response
counts by 2030.5 status and the group's measured power and mean state of charge
(domain.answers; payload types in openadr/reports.py and the README), and, when the event's
reportDescriptors ask for storage payloads (STORAGE_USABLE_CAPACITY, STORAGE_DISPATCH_FORECAST,
STORAGE_MAX_DISCHARGE_POWER, STORAGE_MAX_CHARGE_POWER), the group's capacity above its
reserves from the fleet's facts in memory (services/fleet.py), as of the interval in progress.

One report per event, updated in place: each write is one unit of work recording
``OadrObjectChanged`` (CREATE the first time, UPDATE after), so BL report subscriptions
(webhooks, MQTT) fire through the outbox like any other report. A refresh that would say
nothing new writes nothing and notifies nobody (the claim row keeps a digest of the body).

When it refreshes, and why:

* **time** drives the report's growth: a background task (started by App.start) sleeps until
  the next interval start or event end of any event that asks for reports, by the server's
  clock, and refreshes those events then. The clock can be moved by a lab with no write, so
  the task looks at it at least every `tick` seconds (a comparison, no query) instead of
  trusting one long sleep;
* **answers** fill it in: after a Response or readings are stored (their invalidation tags
  reach every worker over the bus) every event in its reporting window is refreshed, at most
  once per `debounce` seconds per event. Devices answer in bursts (a fleet posting Responses
  at an event's start, readings every postRate); recomputing per answer would cost a report
  write per device, while a few seconds' delay costs the utility nothing;
* an **event written** (created, updated, deleted: the OpenADR tag) recomputes the schedule;
  events that entered their window or were rewritten in it are refreshed at once. Other
  OpenADR writes (csip's own reports among them) only cost that one query.

Several workers (PostgreSQL) all run the task; the event's ``engine_report`` row is claimed
with SELECT ... FOR UPDATE SKIP LOCKED, so one worker writes a given update, and one that
found the row taken tries again after the debounce (it may hold answers the other missed).
A report the BL deleted stays deleted: csip stops reporting on that event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence

from csip.domain.answers import ReportInterval, group_report, with_capacity
from csip.domain.changes import CREATE, UPDATE, OadrObjectChanged
from csip.domain.clock import Clock
from csip.domain.fleet import storage_figures
from csip.domain.programs import Event
from csip.domain.report_requests import (
    AGGREGATED,
    CAPACITY_TYPES,
    descendants,
    in_window,
    next_boundary,
    report_request,
    resource_name,
    samples,
)
from csip.errors import CsipError
from csip.openadr import convert
from csip.openadr.reports import CLIENT_NAME, capacity_payloads, report_body, reported_payloads
from csip.openadr.rules import CSIP_CLIENT_ID, EVENT, REPORT
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.changes import Changes
from csip.services.fleet import FleetService
from csip.store import der as der_store
from csip.store import engine as engine_store
from csip.store import engine_reports as store
from csip.store import openadr as oadr
from csip.store.openadr import StoredObject

log = logging.getLogger(__name__)

WRITTEN, UNCHANGED, SKIPPED, NOTHING = "written", "unchanged", "skipped", "nothing"


def _current_duration(event: Event, now: int) -> int | None:
    """The length of the event's interval in progress (None: none is)."""
    for interval in event.intervals:
        if interval.start <= now < interval.start + interval.duration:
            return interval.duration
    return None


def _event(obj: StoredObject) -> Event:
    """The domain event; an event without a start began when it was last written (as the
    engine planned it then), so its report does not move with each refresh."""
    return convert.event(obj.body | {"id": obj.id}, None, int(obj.modified_at))


class EngineReports:
    def __init__(
        self,
        changes: Changes,
        clock: Clock,
        *,
        debounce: float = 2.0,
        tick: float = 1.0,
        fleet: FleetService | None = None,
    ) -> None:
        self.changes = changes
        #: The fleet's capacity in memory, for the storage payloads an event may ask for.
        self.fleet = fleet
        self.store = changes.store
        self.clock = clock
        self.debounce = debounce
        self.tick = tick
        #: event id -> its next boundary (None: none left), for the events in their window
        #: or not begun yet; and when each was last written (an update refreshes at once).
        self._window: dict[str, int | None] = {}
        self._written: dict[str, float] = {}
        self._schedule_stale = True
        self._scheduled_at = 0
        #: Events to refresh once their debounce allows (answers arrived, event written,
        #: or another worker held the claim).
        self._pending: set[str] = set()
        self._answers = False
        #: Monotonic time of each event's last refresh (the debounce).
        self._last: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        changes.bus.subscribe(self._on_tags)

    # ---- triggers ----------------------------------------------------------------------
    def _on_tags(self, tags: list[str]) -> None:
        if EVERYTHING in tags:
            self._schedule_stale = True
            self._answers = True
            self._wake.set()
        elif tag.OADR in tags:
            self._schedule_stale = True
            self._wake.set()
        elif tag.answers_arrived(tags):
            self._answers = True
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="engine-reports")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: keep the task alive
                log.exception("engine report pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timeout())

    def _timeout(self) -> float:
        timeout = self.tick
        now = self.clock.now()
        due = [t - now for t in self._window.values() if t is not None and t > now]
        if due:  # one already passed waits a tick: a failing pass must not spin
            timeout = min(timeout, min(due))
        if self._pending:
            ready = min(self._last.get(e, 0.0) for e in self._pending) + self.debounce
            timeout = min(timeout, max(0.0, ready - time.monotonic()))
        return timeout

    async def run_once(self) -> list[str]:
        """One pass: refresh the events whose boundary passed or that entered their window
        now, and the pending ones whose debounce allows; answers the events written."""
        now = self.clock.now_int()
        urgent: set[str] = set()
        passed = any(t is not None and t <= now for t in self._window.values())
        if self._schedule_stale or passed or now < self._scheduled_at:
            self._schedule_stale = False
            before, stamps = self._window, self._written
            self._window, self._written = await self._schedule(now)
            self._scheduled_at = now
            urgent = {e for e in self._window if e not in before}
            urgent |= {e for e, at in self._written.items() if stamps.get(e, at) != at}
            urgent |= {e for e, t in before.items() if t is not None and t <= now}
            urgent &= set(self._window)
        if self._answers:
            self._answers = False
            self._pending |= set(self._window)
        self._pending &= set(self._window)
        calm = time.monotonic() - self.debounce
        ready = urgent | {e for e in self._pending if self._last.get(e, 0.0) <= calm}
        written = []
        for event_id in sorted(ready):
            self._pending.discard(event_id)
            self._last[event_id] = time.monotonic()
            outcome = await self.refresh(event_id)
            if outcome == SKIPPED:
                self._pending.add(event_id)
            elif outcome == WRITTEN:
                written.append(event_id)
        return written

    async def _schedule(self, now: int) -> tuple[dict[str, int | None], dict[str, float]]:
        """The events that ask for reports and are in their window (or not begun), with
        their next boundaries and when each was last written."""
        async with self.store.transaction() as s:
            events = await oadr.query(s, EVENT)
        found: dict[str, int | None] = {}
        written: dict[str, float] = {}
        for obj in events:
            if report_request(obj.body.get("reportDescriptors")) is None:
                continue
            try:
                event = _event(obj)
            except CsipError:  # stored before a rule tightened: nothing to report on
                continue
            if in_window(event, now):
                found[obj.id] = next_boundary(event, now)
                written[obj.id] = obj.modified_at
            else:
                upcoming = next_boundary(event, now)
                if upcoming is not None:  # not begun yet: wake when it does
                    found[obj.id] = upcoming
                    written[obj.id] = obj.modified_at
        return found, written

    # ---- one refresh -------------------------------------------------------------------
    async def refresh(self, event_id: str) -> str:
        """Bring the event's report up to date now, in one unit of work (tests and the
        admin side may call it directly). Answers WRITTEN, UNCHANGED, SKIPPED (another
        worker holds the claim) or NOTHING (nothing to report, or the BL deleted it)."""
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            claim = await store.claim_report(s, event_id)
            if claim is None:
                return SKIPPED
            event_obj = await oadr.get(s, EVENT, event_id)
            if event_obj is None:
                return NOTHING
            request = report_request(event_obj.body.get("reportDescriptors"))
            if request is None:
                return NOTHING
            try:
                event = _event(event_obj)
            except CsipError:
                return NOTHING
            now = self.clock.now_int()
            groups = await der_store.select_groups(s)
            reached = [
                g
                for g in await store.select_reached_groups(s, event_id)
                if g in groups and request.covers(groups[g].target)
            ]
            tree = descendants({g.id: g.parent_id for g in groups.values()}, reached)
            members = await store.select_members(s, {x for below in tree.values() for x in below})
            devices = {g: {d for x in tree[g] for d in members.get(x, ())} for g in reached}
            every = sorted({d for ds in devices.values() for d in ds})
            answers = await store.select_answers(s, event_id)
            raw = []
            if every and event.start is not None and event.end is not None:
                until = min(event.end, now + 1)
                raw = await store.select_power_and_charge(s, every, event.start, until)
            measured = samples(raw)
            resources: list[tuple[str, Sequence[ReportInterval]]]
            if request.aggregate:
                named = [(AGGREGATED, every)]
            else:
                named = [(resource_name(g, groups[g].target), sorted(devices[g])) for g in reached]
            existing = None
            if claim.report_id is not None:
                existing = await oadr.get(s, REPORT, claim.report_id)
                if existing is None:  # the BL deleted it: csip stops reporting on the event
                    return NOTHING
            asked = request.payload_types & CAPACITY_TYPES
            floor = 0.0
            if asked:
                choices = await engine_store.select_choices(s, event_obj.program_id or "")
                floor = (choices.terms.reserve_floor_percent or 0.0) if choices else 0.0
            resources = []
            for name, members_of in named:
                intervals = group_report(event, members_of, answers, measured, now)
                if asked and self.fleet is not None:
                    duration = _current_duration(event, now)
                    figures = storage_figures(
                        await self.fleet.inputs_of(s, members_of),
                        now,
                        duration=duration or 3600,
                        program_floor=floor,
                    )
                    kept = {} if existing is None else reported_payloads(existing.body, name, asked)
                    intervals = with_capacity(
                        intervals, capacity_payloads(figures, asked) if duration else (), kept, now
                    )
                resources.append((name, intervals))
            if not any(intervals for _, intervals in resources):
                return NOTHING  # no interval has begun (or no group): nothing to say yet
            body = report_body(event_id, event.name, CSIP_CLIENT_ID, resources)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            if digest == claim.digest:
                return UNCHANGED
            stamp = self.clock.now()
            report = StoredObject(
                id=existing.id if existing else secrets.token_hex(12),
                kind=REPORT,
                body=body,
                targets=[],
                created_at=existing.created_at if existing else stamp,
                modified_at=stamp,
                program_id=event_obj.program_id,
                event_id=event_id,
                client_id=CSIP_CLIENT_ID,
                name=CLIENT_NAME,
            )
            if existing is None:
                stored = await oadr.insert(s, report)
                tx.record(OadrObjectChanged(REPORT, stored.id, CREATE, stored))
            else:
                stored = await oadr.replace(s, report)
                tx.record(OadrObjectChanged(REPORT, stored.id, UPDATE, stored))
            await store.update_report(s, event_id, stored.id, digest, now)
            return WRITTEN
