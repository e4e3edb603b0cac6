"""The program engine: one utility program, two standards.

An OpenADR event (from a BL client over the VTN, or from the admin API, which goes through the
same VTN use case) is planned by the pure `domain.dispatch.plan` for every enrolled 2030.5
group it reaches; this module applies the plan *inside the event's own unit of work*, so the
OpenADR object, the DERControls of every group, the engine's links and every notification
they cause commit together, or (a payload that cannot be converted) nothing does.

Life cycle (issue 10 item 4; 2030.5 events are never deleted):

* create: each group's DERProgram gets the event's contiguous schedule;
* update: a group whose schedule changed gets new controls for the intervals not yet over;
  each supersedes the old control it overlaps (same modes, newer creationTime: IEEE 2030.5
  §12.1.3.3), so a device never sees a gap nor two active controls for one mode; old controls
  no new one supersedes are cancelled. A group whose schedule did not change keeps its
  controls (no churn for devices);
* delete (of the event, or of its program): every control of the event not yet over is
  cancelled, randomized where the event was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from csip.domain.der import Control, Status, event_statuses, is_over
from csip.domain.dispatch import ControlDraft, GroupPlan, MessageDraft, plan
from csip.domain.messaging import TextMessage
from csip.domain.programs import Enrollment, Event, Program, broken_terms
from csip.errors import BadRequest, InvalidValues, NotFound
from csip.metrics import Metrics
from csip.openadr import convert
from csip.openadr.rules import EVENT, PROGRAM
from csip.services.programs import ControlSpec, ProgramService
from csip.store import der as der_store
from csip.store import engine as engine_store
from csip.store import messaging as msg_store
from csip.store import openadr as oadr
from csip.store.engine import EngineControl, GroupMapping, ProgramChoices
from csip.store.openadr import StoredObject
from csip.store.uow import UnitOfWork

DEFAULT_PRIMACY = 10
SIMPLE_LEVELS = range(4)


class MessagePublisher(Protocol):
    """The Messaging function set as the engine uses it, inside its unit of work."""

    async def publish(
        self,
        tx: UnitOfWork,
        group_id: int,
        drafts: Sequence[MessageDraft],
        *,
        source: str | None = None,
    ) -> Sequence[Any]: ...

    async def cancel_source(self, tx: UnitOfWork, source: str) -> Sequence[Any]: ...

    async def cancel_messages(
        self, tx: UnitOfWork, message_ids: Sequence[int]
    ) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What one write of an event did on the 2030.5 side (for the admin API and tests)."""

    published: Mapping[int, Sequence[Control]]
    cancelled: Sequence[Control]


def _spec(draft: ControlDraft) -> ControlSpec:
    return ControlSpec(
        start=draft.start,
        duration=draft.duration,
        base=draft.base,
        description=draft.description,
        randomize_start=draft.randomize_start,
        response_required=draft.response_required,
    )


def _same(control: Control, draft: ControlDraft) -> bool:
    return (
        control.start == draft.start
        and control.duration == draft.duration
        and dict(control.base) == dict(draft.base)
        and control.randomize_start == draft.randomize_start
        and control.response_required == draft.response_required
    )


def _source(event_id: str) -> str:
    return f"event:{event_id}"


class DevicePlanner(Protocol):
    """Per-device dispatch (services/dispatch.py) as the engine uses it, inside its unit of
    work: it plans the devices of per-device programs and answers the group plans left."""

    async def event_written(
        self,
        tx: UnitOfWork,
        event: Event,
        plans: Mapping[int, GroupPlan],
        *,
        whole: bool,
        now: int,
    ) -> dict[int, GroupPlan]: ...

    async def event_deleted(self, tx: UnitOfWork, event_id: str) -> Sequence[Control]: ...


class EngineService:
    def __init__(
        self,
        programs: ProgramService,
        messaging: MessagePublisher | None = None,
        dispatch: DevicePlanner | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.programs = programs
        #: Events applied and controls published or cancelled (csip.metrics), or None.
        self.metrics = metrics
        self.dispatch = dispatch
        self.changes = programs.changes
        self.clock = programs.clock
        self.profile = programs.sep2.settings.profile
        self.messaging = messaging

    # ---- inside the VTN's unit of work ------------------------------------------------------
    async def event_written(
        self,
        tx: UnitOfWork,
        event: StoredObject,
        only: Sequence[int] | None = None,
        *,
        previous: StoredObject | None = None,
        force: bool = False,
    ) -> Applied:
        """Plan a created or updated event for every enrolled group and apply the plan.
        `only`: restrict to these groups (a group just enrolled). The program's terms are
        checked first (`previous`: the event before an update; `force`: the utility calls
        it anyway, and that is recorded)."""
        s = tx.session
        now = self.clock.now_int()
        program_obj = await oadr.get(s, PROGRAM, event.program_id or "")
        if program_obj is None:  # the VTN checked it; a race with a delete lands here
            raise NotFound(f"program {event.program_id!r} is gone")
        program = await self._program(tx, program_obj)
        domain_event = convert.event(event.body | {"id": event.id}, program_obj.body, now)
        if only is None:
            await self._check_terms(tx, program_obj, domain_event, previous, force, now)
        enrollments = await engine_store.select_enrollments(s, program.id)
        if only is not None:
            enrollments = [e for e in enrollments if e.group_id in only]
        plans = {
            p.enrollment.group_id: p
            for p in plan(domain_event, program, enrollments, self.profile, now)
        }
        if self.dispatch is not None:  # per-device programs: each battery its own share
            plans = await self.dispatch.event_written(
                tx, domain_event, plans, whole=only is None, now=now
            )
        existing = await engine_store.select_engine_controls(s, event.id)
        if only is not None:
            existing = [c for c in existing if c.group_id in only]
        applied = await self._apply(tx, event.id, plans, existing, now, only is None)
        self._count("written" if only is None else "", applied)
        return applied

    def _count(self, operation: str, applied: Applied) -> None:
        """Metrics of one application (counted inside its unit of work: a transaction that
        fails after this counts still, which is rare and errs towards work attempted)."""
        metrics = self.metrics
        if metrics is None:
            return
        if operation:
            metrics.events.labels(operation).inc()
        published = sum(len(controls) for controls in applied.published.values())
        if published:
            metrics.controls.labels("published").inc(published)
        if applied.cancelled:
            metrics.controls.labels("cancelled").inc(len(applied.cancelled))

    async def _check_terms(
        self,
        tx: UnitOfWork,
        program_obj: StoredObject,
        event: Event,
        previous: StoredObject | None,
        force: bool,
        now: int,
    ) -> None:
        """400 naming every term the event breaks, unless forced (then recorded). An update
        that keeps the event's start is not held to the notice it was given at first."""
        choices = await engine_store.select_choices(tx.session, program_obj.id)
        if choices is None or event.start is None or event.end is None:
            return
        terms = choices.terms
        if previous is not None:
            before = convert.event(previous.body | {"id": previous.id}, program_obj.body, now)
            if before.start == event.start:
                terms = replace(terms, min_notice_seconds=None)
        others = []
        for other in await oadr.query(tx.session, EVENT, program_id=program_obj.id):
            if other.id != event.id:
                start = convert.event(other.body, program_obj.body, now).start
                if start is not None:
                    others.append(start)
        tz = self.programs.sep2.settings.tz
        broken = broken_terms(event.start, event.end, terms, others, now, tz)
        if broken and not force:
            raise InvalidValues(
                f"the event breaks program {program_obj.body.get('programName')!r}'s terms: "
                + "; ".join(broken)
                + " (the admin API's force=true calls it anyway, recorded)"
            )
        if broken:
            await engine_store.insert_forced(tx.session, event.id, now, broken)

    async def event_deleted(self, tx: UnitOfWork, event: StoredObject) -> Applied:
        """Cancel every control of the event not yet over (randomized where the event was)."""
        live = await self._live(tx, await engine_store.select_engine_controls(tx.session, event.id))
        randomized = any(c.control.randomize_start for c in live)
        cancelled = await self.programs.cancel_controls(
            tx, [c.control.id for c in live], randomized
        )
        if self.messaging is not None:
            await self.messaging.cancel_source(tx, _source(event.id))
        if self.dispatch is not None:
            cancelled = [*cancelled, *await self.dispatch.event_deleted(tx, event.id)]
        applied = Applied({}, cancelled)
        self._count("deleted", applied)
        return applied

    async def _apply(
        self,
        tx: UnitOfWork,
        event_id: str,
        plans: Mapping[int, GroupPlan],
        existing: Sequence[EngineControl],
        now: int,
        whole: bool,
    ) -> Applied:
        live = await self._live(tx, existing)
        by_group: dict[int, list[EngineControl]] = {}
        for link in live:
            by_group.setdefault(link.group_id, []).append(link)
        schedules: dict[int, list[ControlSpec]] = {}
        intervals: dict[int, list[tuple[int, ...]]] = {}
        group_of_program: dict[int, int] = {}
        doomed: list[int] = []
        for group_id in sorted(set(plans) | set(by_group)):
            group_plan = plans.get(group_id)
            old = by_group.get(group_id, [])
            drafts = list(group_plan.controls) if group_plan is not None else []
            if _unchanged(old, drafts):
                continue
            if group_plan is not None and drafts:
                pid = group_plan.enrollment.der_program_id
                schedules[pid] = [_spec(d) for d in drafts]
                intervals[pid] = [d.interval_ids for d in drafts]
                group_of_program[pid] = group_id
            doomed += [link.control.id for link in old if not _superseded(link.control, drafts)]
        published = await self.programs.publish_schedules(tx, schedules)
        links = [
            (group_of_program[pid], control.id, ids)
            for pid, controls in published.items()
            for control, ids in zip(controls, intervals[pid], strict=True)
        ]
        await engine_store.insert_engine_controls(tx.session, event_id, links)
        randomized = any(link.control.randomize_start for link in live)
        cancelled = await self.programs.cancel_controls(tx, doomed, randomized) if doomed else []
        messages = await self._messages(tx, event_id, plans, whole)
        mappings = [
            GroupMapping(
                g,
                now,
                tuple((u.payload_type, u.reason) for u in p.unmapped),
                messages.get(g, 0),
            )
            for g, p in plans.items()
        ]
        if whole:
            await engine_store.upsert_mappings(tx.session, event_id, mappings)
        else:
            await engine_store.add_mappings(tx.session, event_id, mappings)
        return Applied(published, cancelled)

    async def _messages(
        self,
        tx: UnitOfWork,
        event_id: str,
        plans: Mapping[int, GroupPlan],
        whole: bool,
    ) -> dict[int, int]:
        """Alerts and notices of the event per group: a group whose messages changed gets
        the old ones cancelled and the new ones published; an unchanged group is left alone
        (devices see no churn). `whole`: groups the event no longer reaches lose theirs."""
        if self.messaging is None:
            return {}
        now = self.clock.now_int()
        source = _source(event_id)
        group_of = {p.id: p.group_id for p in await msg_store.select_messaging_programs(tx.session)}
        old: dict[int, list[TextMessage]] = {}
        for message in await msg_store.select_text_messages_of_source(tx.session, source):
            if message.cancelled_at is None and message.end > now:
                old.setdefault(group_of[message.program_id], []).append(message)
        counts = {}
        groups = set(plans) | (set(old) if whole else set())
        for group_id in sorted(groups):
            drafts = plans[group_id].messages if group_id in plans else ()
            mine = old.get(group_id, [])
            counts[group_id] = len(drafts)
            wanted = sorted((d.start, d.duration, d.text, d.priority) for d in drafts)
            if wanted == sorted((m.start, m.duration, m.text, m.priority) for m in mine):
                continue
            if mine:
                await self.messaging.cancel_messages(tx, [m.id for m in mine])
            if drafts:
                await self.messaging.publish(tx, group_id, drafts, source=source)
        return counts

    async def _live(self, tx: UnitOfWork, links: Sequence[EngineControl]) -> list[EngineControl]:
        """The controls still in force: not over, not cancelled, not superseded."""
        now = self.clock.now_int()
        keep = []
        programs = list(dict.fromkeys(link.control.program_id for link in links))
        statuses = {}
        # one query per 500 programs: an event reaches every enrolled group at once
        for controls in (await der_store.select_controls_by_program(tx.session, programs)).values():
            statuses.update(event_statuses(controls, now))
        for link in links:
            status = statuses.get(link.control.id)
            if status is None or is_over(link.control, now):
                continue
            if status.current in (Status.SCHEDULED, Status.ACTIVE):
                keep.append(link)
        return keep

    async def _program(self, tx: UnitOfWork, program_obj: StoredObject) -> Program:
        choices = await engine_store.select_choices(tx.session, program_obj.id)
        if choices is None:
            choices = default_choices(program_obj.id)
        return Program(
            id=program_obj.id,
            name=str(program_obj.body.get("programName", program_obj.id)),
            primacy=choices.primacy,
            simple_levels=choices.simple_levels,
            notice_before=choices.notice_before,
            notice_after=choices.notice_after,
            notice_lead=choices.notice_lead,
            message_originator=choices.originator,
        )

    # ---- the utility's side (admin API, CLI) ---------------------------------------------
    async def set_choices(self, choices: ProgramChoices) -> ProgramChoices:
        """Set a program's primacy, SIMPLE table and notices. Every SIMPLE level's
        DERControlBase is checked and validated now, not when an event first uses it."""
        if not 0 <= choices.primacy <= 255:
            raise InvalidValues("primacy is 0-255")
        if not 0 <= choices.notice_lead <= 7 * 86400:
            raise InvalidValues("noticeLead is 0 to 604800 seconds")
        for level, base in choices.simple_levels.items():
            if level not in SIMPLE_LEVELS:
                raise InvalidValues(f"SIMPLE level {level}: levels are 0-3")
            spec = ControlSpec(start=0, duration=60, base=base)
            try:
                self.programs._check_spec(spec, {}, self.clock.now_int())
            except InvalidValues as error:
                raise InvalidValues(f"SIMPLE level {level}: {error.detail}") from error
        async with self.changes.unit_of_work() as tx:
            await self._vtn_program(tx, choices.program_id)
            return await engine_store.upsert_choices(tx.session, choices)

    async def choices(self, program_id: str) -> ProgramChoices:
        async with self.changes.unit_of_work() as tx:
            await self._vtn_program(tx, program_id)
            found = await engine_store.select_choices(tx.session, program_id)
            return found or default_choices(program_id)

    async def _vtn_program(self, tx: UnitOfWork, program_id: str) -> StoredObject:
        program = await oadr.get(tx.session, PROGRAM, program_id)
        if program is None or program.deleted_at is not None:
            raise NotFound(f"no OpenADR program {program_id!r}")
        return program

    async def program_id(self, id_or_name: str) -> str:
        """An OpenADR program's id from its id or its programName (the CLI takes either)."""
        async with self.changes.unit_of_work() as tx:
            if await oadr.get(tx.session, PROGRAM, id_or_name) is not None:
                return id_or_name
            named = await oadr.query(tx.session, PROGRAM, name=id_or_name)
            if not named:
                raise NotFound(f"no OpenADR program with id or programName {id_or_name!r}")
            return named[0].id

    async def enroll(self, program_id: str, group_id: int) -> Enrollment:
        """Enroll a group: it gets a DERProgram for this program (the program's primacy) and
        at once the program's events not yet over, planned for it alone."""
        async with self.changes.unit_of_work() as tx:
            program_obj = await self._vtn_program(tx, program_id)
            program = await self._program(tx, program_obj)
            await der_store._live_group(tx.session, group_id)
            description = program.name[:32]
            der_program = await self.programs._create_program(
                tx, group_id, description, program.primacy
            )
            now = self.clock.now_int()
            await engine_store.insert_enrollment(
                tx.session, program_id, group_id, der_program.id, now
            )
            for event in await oadr.query(tx.session, EVENT, program_id=program_id):
                await self.event_written(tx, event, only=[group_id])
            enrollments = await engine_store.select_enrollments(tx.session, program_id)
            return next(e for e in enrollments if e.group_id == group_id)

    async def unenroll(self, program_id: str, group_id: int) -> list[Control]:
        """The group leaves the program: its DERProgram is deleted (controls cancelled, out
        of devices' lists, history kept)."""
        async with self.changes.unit_of_work() as tx:
            der_program_id = await engine_store.delete_enrollment(tx.session, program_id, group_id)
            return await self.programs.delete_program_in(tx, der_program_id)

    async def enrollments(self, program_id: str) -> list[Enrollment]:
        async with self.changes.unit_of_work() as tx:
            await self._vtn_program(tx, program_id)
            return await engine_store.select_enrollments(tx.session, program_id)

    async def set_target(self, group_id: int, target: str | None) -> Any:
        if target is not None and not 0 < len(target) <= 128:
            raise BadRequest("a target name is 1-128 characters")
        async with self.changes.unit_of_work() as tx:
            return await engine_store.update_group_target(tx.session, group_id, target)

    async def mapping(self, event_id: str) -> dict[str, Any]:
        """Per group the event reached: its controls (with EventStatus now), its messages,
        and what was not mapped, with the reason."""
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            event = await oadr.get(s, EVENT, event_id)  # None once deleted
            mappings = await engine_store.select_mappings(s, event_id)
            if event is None and not mappings:
                raise NotFound(f"no event {event_id!r}")
            now = self.clock.now_int()
            links = await engine_store.select_engine_controls(s, event_id)
            groups = await der_store.select_groups(s)
            statuses: dict[int, Any] = {}
            programs = sorted({link.control.program_id for link in links})
            for controls in (await der_store.select_controls_by_program(s, programs)).values():
                statuses.update(event_statuses(controls, now))
            of_group: dict[int, list[EngineControl]] = {}
            for link in links:
                of_group.setdefault(link.group_id, []).append(link)
            result = []
            for m in mappings:
                group = groups.get(m.group_id)
                mine = of_group.get(m.group_id, [])
                result.append(
                    {
                        "group": m.group_id,
                        "target": group.target if group else None,
                        "planned_at": m.planned_at,
                        "controls": [_control_json(link, statuses, now) for link in mine],
                        "messages": m.messages,
                        "unmapped": [{"payload_type": t, "reason": r} for t, r in m.unmapped],
                    }
                )
            return {
                "event": event_id,
                "deleted": event is None,
                "forced": await engine_store.select_forced(s, event_id),
                "groups": result,
            }


def _unchanged(old: Sequence[EngineControl], drafts: Sequence[ControlDraft]) -> bool:
    """The live controls are exactly the new schedule (an update that did not touch this
    group's payloads): nothing to publish, nothing to cancel."""
    if len(old) != len(drafts):
        return False
    ordered = sorted(old, key=lambda link: link.control.start)
    return all(_same(link.control, d) for link, d in zip(ordered, drafts, strict=True))


def _superseded(control: Control, drafts: Sequence[ControlDraft]) -> bool:
    """A new control will supersede this one (overlaps it with at least its modes)."""
    modes = control.modes
    return any(
        d.start < control.end and control.start < d.end and modes <= set(d.base) for d in drafts
    )


def _control_json(link: EngineControl, statuses: Mapping[int, Any], now: int) -> dict[str, Any]:
    control = link.control
    status = statuses.get(control.id)
    name = status.current.name.lower() if status is not None else "unknown"
    if name in ("scheduled", "active") and is_over(control, now):
        name = "completed"
    return {
        "id": control.id,
        "href": control.href,
        "program": control.program_id,
        "start": control.start,
        "duration": control.duration,
        "base": dict(control.base),
        "randomize_start": control.randomize_start,
        "response_required": control.response_required,
        "intervals": list(link.interval_ids),
        "status": name,
    }


def default_choices(program_id: str) -> ProgramChoices:
    return ProgramChoices(program_id, DEFAULT_PRIMACY, {}, None, None, 3600, "utility")
