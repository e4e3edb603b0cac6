"""Per-device dispatch of customer battery programs (issue 12 items 3 and 4).

A program whose choice is ``dispatch: "per-device"`` does not send its groups one
``opModTargetW`` for everybody: each battery of an enrolled group gets its own share, in a
DERProgram of its own (the device's own group, as the DER function set allows) one primacy
more important than the group's, so the device's control wins over anything the group's
program says for the same mode (IEEE 2030.5 §12.1.3.3). `domain.device_dispatch` decides the
shares; this module applies them.

* **When the event is written** (`event_written`, called by the engine inside the event's own
  unit of work): every enrolled group's ``DISPATCH_SETPOINT`` and ``CHARGE_STATE_SETPOINT``
  intervals are planned per device from the facts the devices posted (services/fleet.py),
  controls are published for the devices whose setpoints changed, the others keep theirs, and
  the plan (inputs, setpoints, shortfall) is stored for the admin API. The group's own
  DERProgram keeps the event's other modes, never the group's total as a device target.
* **During the event** (`check`, run by `DispatchWatch` a few seconds after devices posted
  readings or Responses, and once a minute for staleness; or by the admin API): a device that
  opted out (Response 4 or 5), went stale or falls short is taken out or re-planned, and
  the others share what it no longer gives, with controls that supersede their old ones. No
  device gets a new setpoint more than once per 15 minutes (an event update aside); the
  history of re-plans, with why, stays with the plan.

Several workers: `check` claims the event's plan rows (FOR UPDATE SKIP LOCKED) first, so one
worker re-plans an event at a time; one that found them taken leaves it to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from csip.domain.der import Control, is_over
from csip.domain.device_dispatch import (
    CHARGE,
    DISCHARGE,
    OPTED_OUT,
    Ask,
    Inputs,
    IntervalPlan,
    assess,
    due_for_replan,
    inputs,
    plan_group,
)
from csip.domain.dispatch import DESCRIPTION_MAX, RESPONSE_REQUIRED, GroupPlan, Unmapped
from csip.domain.fleet import DerFacts
from csip.domain.groups import descendants
from csip.domain.programs import Event
from csip.errors import CsipError, InvalidValues, NotFound
from csip.metrics import Metrics
from csip.openadr import convert
from csip.openadr.rules import EVENT, PROGRAM
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.programs import ControlSpec, ProgramService
from csip.store import der as der_store
from csip.store import dispatch as store
from csip.store import engine as engine_store
from csip.store import fleet as fleet_store
from csip.store import openadr as oadr
from csip.store import settlement as settlement_store
from csip.store.dispatch import DeviceControl, StoredPlan
from csip.store.engine import ProgramChoices
from csip.store.uow import UnitOfWork

log = logging.getLogger(__name__)

GROUP, PER_DEVICE = "group", "per-device"
DISPATCH_MODES = (GROUP, PER_DEVICE)
TARGET = "opModTargetW"
#: Response statuses that take a device out of the event (IEEE 2030.5 Table 27).
OPT_OUT = frozenset({4, 5})
INT16_MAX = 2**15 - 1


def device_power(watts: int) -> tuple[dict[str, int], int]:
    """An ActivePower for `watts`, rounded toward zero when an Int16 cannot hold it (never
    more than the device can give), and the watts it really says."""
    multiplier = 0
    value = watts
    while abs(value) > INT16_MAX:
        multiplier += 1
        value = int(Decimal(watts).scaleb(-multiplier))  # int() truncates toward zero
    return {"multiplier": multiplier, "value": value}, value * 10**multiplier


def asks(event: Event, now: int) -> tuple[list[Ask], list[Unmapped]]:
    """What each interval asks of a per-device group, and the payloads that cannot be."""
    found: list[Ask] = []
    unmapped: dict[str, str] = {}
    for interval in event.intervals:
        for payload in interval.payloads:
            number = payload.values[0] if len(payload.values) == 1 else None
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            if payload.type == "DISPATCH_SETPOINT" and event.units(payload.type) == "KW":
                kind, value = DISCHARGE, float(number) * 1000
            elif payload.type == "CHARGE_STATE_SETPOINT":
                if event.units(payload.type) != "PERCENT" or not 0 <= number <= 1:
                    unmapped[payload.type] = "needs units PERCENT, a value from 0.0 to 1.0"
                    continue
                kind, value = CHARGE, float(number) * 100
            else:
                continue
            found.append(Ask(interval.id, interval.start, interval.duration, kind, value))
    return found, [Unmapped(t, r) for t, r in sorted(unmapped.items())]


def strip(group_plan: GroupPlan, extra: Sequence[Unmapped]) -> GroupPlan:
    """The group's own schedule without the power target (each device has its own); the
    charge setpoint is no longer unmapped (each device got one) unless it could not be."""
    controls = []
    for draft in group_plan.controls:
        base = {k: v for k, v in draft.base.items() if k != TARGET}
        if base:
            controls.append(replace(draft, base=base))
    unmapped = [u for u in group_plan.unmapped if u.payload_type != "CHARGE_STATE_SETPOINT"]
    return replace(group_plan, controls=tuple(controls), unmapped=(*unmapped, *extra))


class DispatchService:
    def __init__(self, programs: ProgramService, metrics: Metrics | None = None) -> None:
        self.programs = programs
        #: Plans made and checks' outcomes (csip.metrics), or None.
        self.metrics = metrics
        self.sep2 = programs.sep2
        self.changes = programs.changes
        self.clock = programs.clock

    # ---- inside the event's unit of work (the engine) ------------------------------------
    async def event_written(
        self,
        tx: UnitOfWork,
        event: Event,
        plans: Mapping[int, GroupPlan],
        *,
        whole: bool,
        now: int,
    ) -> dict[int, GroupPlan]:
        """Plan a per-device program's event for each group in `plans` and publish the
        devices' controls; answers the group plans the engine should still apply (without
        the target each device now has). A group program returns `plans` untouched."""
        choices = await engine_store.select_choices(tx.session, event.program_id)
        if choices is None or choices.dispatch != PER_DEVICE:
            if whole and await store.select_plans(tx.session, event.id):
                await self.event_deleted(tx, event.id)  # the program went back to group
            return dict(plans)
        wanted, extra = asks(event, now)
        old = await store.select_plans(tx.session, event.id) or []
        links = await store.select_device_controls(tx.session, event.id)
        for group_id in sorted(plans):
            await self._plan(tx, event, choices, group_id, wanted, links, now)
        if whole:
            gone = {p.group_id for p in old} - set(plans)
            await self._cancel(tx, [c for c in links if c.group_id in gone])
            await store.delete_plans(tx.session, event.id, gone)
        return {g: strip(p, extra) for g, p in plans.items()}

    async def event_deleted(self, tx: UnitOfWork, event_id: str) -> list[Control]:
        """Every device control of the event not yet over is cancelled."""
        links = await store.select_device_controls(tx.session, event_id)
        cancelled = await self._cancel(tx, links)
        await store.delete_plans(
            tx.session,
            event_id,
            {p.group_id for p in await store.select_plans(tx.session, event_id) or []},
        )
        return cancelled

    async def _cancel(self, tx: UnitOfWork, links: Sequence[DeviceControl]) -> list[Control]:
        now = self.clock.now_int()
        ids = [
            c.control.id
            for c in links
            if c.control.cancelled_at is None and not is_over(c.control, now)
        ]
        return await self.programs.cancel_controls(tx, ids, False) if ids else []

    async def _facts(self, tx: UnitOfWork, group_id: int) -> list[DerFacts]:
        groups = await der_store.select_groups(tx.session)
        below = descendants(groups, group_id)
        default = await self.sep2.default_post_rate()
        return await fleet_store.select_der_facts(
            tx.session, group_ids=below, default_post_rate=default
        )

    async def _plan(
        self,
        tx: UnitOfWork,
        event: Event,
        choices: ProgramChoices,
        group_id: int,
        wanted: Sequence[Ask],
        links: Sequence[DeviceControl],
        now: int,
    ) -> None:
        if self.metrics is not None:
            self.metrics.dispatch_plans.inc()
        floor = choices.terms.reserve_floor_percent or 0.0
        facts = await self._facts(tx, group_id)
        devices = [inputs(f, floor, now) for f in facts]
        planned = plan_group(wanted, devices, now)
        mine = [c for c in links if c.group_id == group_id]
        status = {d.device_id: ("unavailable", d.unavailable) for d in devices if d.unavailable}
        changed = await self._publish(
            tx, event, choices, group_id, planned, devices, status, mine, now
        )
        lfdis = await fleet_store.select_lfdis(tx.session, [d.device_id for d in devices])
        document = _document(planned, devices, status, lfdis, {d: now for d in changed}, {})
        end = event.end or now
        await store.upsert_plan(tx.session, StoredPlan(event.id, group_id, now, end, document))

    async def _publish(
        self,
        tx: UnitOfWork,
        event: Event,
        choices: ProgramChoices,
        group_id: int,
        planned: Sequence[IntervalPlan],
        devices: Sequence[Inputs],
        status: Mapping[int, tuple[str, str | None]],
        links: Sequence[DeviceControl],
        now: int,
        only: set[int] | None = None,
    ) -> set[int]:
        """Controls for the devices whose setpoints changed (of `only`, when given); the old
        ones a new one does not supersede, and those of devices out of the plan, are
        cancelled. Answers the devices that got new controls."""
        live = _live(links, now)
        schedules: dict[int, list[ControlSpec]] = {}
        carried: dict[int, list[tuple[int, ...]]] = {}
        owner: dict[int, int] = {}
        doomed: list[int] = []
        lfdis = await fleet_store.select_lfdis(tx.session, [d.device_id for d in devices])
        changed: set[int] = set()
        for device in devices:
            d = device.device_id
            if only is not None and d not in only:
                continue
            old = live.get(d, [])
            if d in status:
                doomed += [c.control.id for c in old]
                continue
            specs, ids = _schedule(event, planned, d)
            if _same(old, planned, d):
                continue
            changed.add(d)
            doomed += [
                c.control.id
                for c in old
                if not any(
                    s.start < c.control.end and c.control.start < s.start + s.duration
                    for s in specs
                )
            ]
            if not specs:
                continue
            program = await self.programs._program_for(
                tx, lfdi=lfdis[d], group_id=None, primacy=choices.primacy - 1
            )
            schedules[program.id] = specs
            carried[program.id] = ids
            owner[program.id] = d
        published = await self.programs.publish_schedules(tx, schedules)
        await store.insert_device_controls(
            tx.session,
            event.id,
            [
                (group_id, owner[pid], control.id, ids)
                for pid, controls in published.items()
                for control, ids in zip(controls, carried[pid], strict=True)
            ],
        )
        if doomed:
            await self.programs.cancel_controls(tx, doomed, False)
        return changed

    # ---- staying true during the event -------------------------------------------------------
    async def check(self, event_id: str) -> dict[str, Any] | None:
        """Re-plan the event's groups where a device opted out, went stale, came back or
        falls short; None when another worker holds the event. Answers what was re-planned
        (group -> device LFDI -> why)."""
        done = await self._check(event_id)
        if done is not None and self.metrics is not None:  # counted once committed
            self.metrics.dispatch_checks.labels("replanned" if done else "unchanged").inc()
        return done

    async def _check(self, event_id: str) -> dict[str, Any] | None:
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            plans = await store.select_plans(s, event_id, claim=True)
            if plans is None:
                return None
            now = self.clock.now_int()
            event_obj = await oadr.get(s, EVENT, event_id)
            if event_obj is None or not plans:
                return {}
            program_obj = await oadr.get(s, PROGRAM, event_obj.program_id or "")
            choices = await engine_store.select_choices(s, event_obj.program_id or "")
            if program_obj is None or choices is None or choices.dispatch != PER_DEVICE:
                return {}
            try:
                event = convert.event(event_obj.body | {"id": event_id}, program_obj.body, now)
            except CsipError:
                return {}
            wanted, _ = asks(event, now)
            links = await store.select_device_controls(s, event_id)
            answers = await settlement_store.select_response_statuses(
                s, [c.control.id for c in links]
            )
            done: dict[str, Any] = {}
            for stored in plans:
                if stored.ends_at <= now:
                    continue
                why = await self._recheck(tx, event, choices, stored, wanted, links, answers, now)
                if why:
                    done[str(stored.group_id)] = why
            return done

    async def _recheck(
        self,
        tx: UnitOfWork,
        event: Event,
        choices: ProgramChoices,
        stored: StoredPlan,
        wanted: Sequence[Ask],
        links: Sequence[DeviceControl],
        answers: Mapping[int, set[int]],
        now: int,
    ) -> dict[str, str]:
        floor = choices.terms.reserve_floor_percent or 0.0
        facts = {f.device_id: f for f in await self._facts(tx, stored.group_id)}
        devices = [inputs(f, floor, now) for f in facts.values()]
        before: dict[str, Any] = stored.plan.get("devices", {})
        mine = [c for c in links if c.group_id == stored.group_id]
        live = _live(mine, now)
        current = {d: c for d, cs in live.items() if (c := _current(cs, now)) is not None}
        starts = [c.control.start for c, _ in current.values()] or [now]
        readings = await settlement_store.select_power_readings(
            tx.session, sorted(facts), min(starts), now + 1
        )
        # a device follows its old setpoint until it reads the new one: within a pollRate
        grace = (await self.sep2.poll_rates()).get("DERProgramList", 300)
        devices = [_projected(x, current.get(x.device_id), now, grace) for x in devices]
        triggers: dict[int, str] = {}
        status: dict[int, tuple[str, str | None]] = {}
        caps: dict[int, float] = {}
        for device in devices:
            d = device.device_id
            was = before.get(str(d), {})
            if answers.get(d, set()) & OPT_OUT:
                status[d] = ("opted out", OPTED_OUT)
                if was.get("status") != "opted out":
                    triggers[d] = OPTED_OUT
                continue
            if device.unavailable is not None:
                status[d] = ("unavailable", device.unavailable)
                if was.get("status") != "unavailable":
                    triggers[d] = device.unavailable
                continue
            if was.get("status") == "unavailable":
                triggers[d] = "available again"
            link, watts = current.get(d) or (None, 0)
            if link is None or watts <= 0:
                continue
            mine_readings = [r for r in readings.get(d, []) if r[0] >= link.control.start]
            verdict = assess(facts[d], device.reserve, watts, link.control.end, mine_readings, now)
            if verdict.reason is not None:
                triggers[d] = verdict.reason
                if verdict.cap_w is not None:
                    caps[d] = verdict.cap_w
        if not triggers:
            return {}
        #: when each device last got a setpoint (None: never; it may be planned at once)
        planned_at: dict[int, int | None] = {int(d): v.get("planned_at") for d, v in before.items()}
        fixed = {
            d: {int(i): int(w) for i, w in before[str(d)].get("setpoints", {}).items()}
            for d in (x.device_id for x in devices)
            if d not in status
            and (at := planned_at.get(d)) is not None
            and not due_for_replan(at, now)
        }
        excluded = {d: why or OPTED_OUT for d, (kind, why) in status.items() if kind == "opted out"}
        planned = plan_group(wanted, devices, now, fixed=fixed, caps=caps, excluded=excluded)
        movable = {x.device_id for x in devices} - set(fixed)
        changed = await self._publish(
            tx, event, choices, stored.group_id, planned, devices, status, mine, now, only=movable
        )
        lfdis = await fleet_store.select_lfdis(tx.session, [x.device_id for x in devices])
        for d in changed:
            planned_at[d] = now
        reasons = {lfdis.get(d, str(d)): why for d, why in sorted(triggers.items())}
        history = [
            *stored.plan.get("replans", []),
            {"at": now, "why": reasons, "replanned": sorted(lfdis[d] for d in changed)},
        ]
        document = _document(planned, devices, status, lfdis, planned_at, caps, triggers)
        document["replans"] = history
        await store.upsert_plan(
            tx.session,
            StoredPlan(
                stored.event_id, stored.group_id, stored.planned_at, stored.ends_at, document
            ),
        )
        return reasons

    # ---- the admin API -----------------------------------------------------------------------
    async def explain(self, event_id: str) -> dict[str, Any]:
        """Per group: each interval's target, what the group could give and the shortfall;
        per device its inputs, setpoints, status and when it was last planned; the re-plans."""
        async with self.changes.unit_of_work() as tx:
            plans = await store.select_plans(tx.session, event_id) or []
            if not plans and await oadr.get(tx.session, EVENT, event_id) is None:
                raise NotFound(f"no event {event_id!r}")
        return {
            "event": event_id,
            "groups": [{"group": p.group_id, "planned_at": p.planned_at, **p.plan} for p in plans],
        }


def check_choices(choices: ProgramChoices) -> None:
    if choices.dispatch not in DISPATCH_MODES:
        raise InvalidValues(f"dispatch is one of {', '.join(DISPATCH_MODES)}")
    if choices.dispatch == PER_DEVICE and choices.primacy < 1:
        raise InvalidValues(
            "per-device dispatch needs primacy 1 or more: each device's own program is one "
            "primacy more important than its group's"
        )


def _projected(
    device: Inputs, current: tuple[DeviceControl, int] | None, now: int, grace: int
) -> Inputs:
    """The device's state of charge when it will follow a new setpoint: it keeps its current
    one from its last post until it reads the new control, up to `grace` seconds (the
    DERProgramList pollRate) from now. A re-plan shares what will be left then, so a device
    slow to hear it still never dips under its reserve."""
    if current is None or device.soc is None or device.soc_at is None or not device.usable_wh:
        return device
    link, watts = current
    since = max(device.soc_at, link.control.start)
    until = min(now + grace, link.control.end)
    if watts <= 0 or until <= since:
        return device
    spent = watts * (until - since) / 3600 / device.usable_wh * 100
    return replace(device, soc=max(0.0, device.soc - spent))


def _live(links: Sequence[DeviceControl], now: int) -> dict[int, list[DeviceControl]]:
    """Per device, its controls not over and not cancelled (older ones a newer one
    supersedes included: `_current` picks the one in force)."""
    found: dict[int, list[DeviceControl]] = {}
    for link in links:
        c = link.control
        if is_over(c, now) or (c.cancelled_at is not None and c.cancelled_at <= now):
            continue
        found.setdefault(link.device_id, []).append(link)
    return found


def _watts(control: Control) -> int:
    power = control.base.get(TARGET) or {}
    return int(power.get("value", 0)) * int(10 ** int(power.get("multiplier", 0)))


def _current(links: Sequence[DeviceControl], now: int) -> tuple[DeviceControl, int] | None:
    """The device's control in force now: the newest that covers now."""
    running = [c for c in links if c.control.start <= now < c.control.end]
    if not running:
        return None
    newest = max(running, key=lambda c: (c.control.creation_time, c.control.id))
    return newest, _watts(newest.control)


def _by_interval(links: Sequence[DeviceControl]) -> dict[int, int]:
    """interval id -> W, the newest control carrying each interval winning."""
    found: dict[int, tuple[tuple[int, int], int]] = {}
    for link in links:
        key = (link.control.creation_time, link.control.id)
        for interval in link.interval_ids:
            if interval not in found or found[interval][0] < key:
                found[interval] = (key, _watts(link.control))
    return {i: w for i, (_, w) in found.items()}


def _same(old: Sequence[DeviceControl], planned: Sequence[IntervalPlan], device: int) -> bool:
    wanted = {p.interval_id: device_power(p.setpoints.get(device, 0))[1] for p in planned}
    return bool(old) and _by_interval(old) == wanted


def _schedule(
    event: Event, planned: Sequence[IntervalPlan], device: int
) -> tuple[list[ControlSpec], list[tuple[int, ...]]]:
    """One control per run of touching intervals with the same setpoint."""
    runs: list[tuple[int, int, int, list[int]]] = []  # start, end, W, interval ids
    for p in planned:
        _, watts = device_power(p.setpoints.get(device, 0))
        if runs and runs[-1][1] == p.start and runs[-1][2] == watts:
            start, _, w, ids = runs[-1]
            runs[-1] = (start, p.end, w, [*ids, p.interval_id])
        else:
            runs.append((p.start, p.end, watts, [p.interval_id]))
    specs = []
    for start, end, watts, ids in runs:
        suffix = f" #{ids[0]}" if len(ids) == 1 else f" #{ids[0]}-{ids[-1]}"
        power, _ = device_power(watts)
        specs.append(
            ControlSpec(
                start=start,
                duration=end - start,
                base={TARGET: power},
                description=event.name[: DESCRIPTION_MAX - len(suffix)] + suffix,
                response_required=RESPONSE_REQUIRED,
            )
        )
    return specs, [tuple(r[3]) for r in runs]


def _document(
    planned: Sequence[IntervalPlan],
    devices: Sequence[Inputs],
    status: Mapping[int, tuple[str, str | None]],
    lfdis: Mapping[int, str],
    planned_at: Mapping[int, int | None],
    caps: Mapping[int, float],
    triggers: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    triggers = triggers or {}
    found: dict[str, Any] = {}
    for device in devices:
        d = device.device_id
        kind, why = status.get(d, ("planned", None))
        found[str(d)] = {
            "lfdi": lfdis.get(d),
            "inputs": device.json(),
            "setpoints": {
                str(p.interval_id): device_power(p.setpoints.get(d, 0))[1]
                for p in planned
                if kind == "planned"
            },
            "deliverable": {str(p.interval_id): p.deliverable.get(d, 0) for p in planned},
            "status": kind if d not in triggers or kind != "planned" else "re-planned",
            "reason": why or triggers.get(d),
            "cap_w": caps.get(d),
            "planned_at": planned_at.get(d),
        }
    return {
        "intervals": [p.json() for p in planned],
        "shortfall_w": max((p.shortfall_w for p in planned), default=0),
        "devices": found,
        "replans": [],
    }


class DispatchWatch:
    """Runs `check` on every event with a per-device plan not over: `debounce` seconds after
    devices posted readings or Responses (a fleet posts in bursts), and every `tick` seconds
    regardless (a device that stops posting goes stale with no write)."""

    def __init__(
        self,
        dispatch: DispatchService,
        *,
        debounce: float = 5.0,
        tick: float = 60.0,
    ) -> None:
        self.dispatch = dispatch
        self.debounce = debounce
        self.tick = tick
        self._answers_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        dispatch.changes.bus.subscribe(self._on_tags)

    def _on_tags(self, tags: list[str]) -> None:
        if EVERYTHING in tags or tag.answers_arrived(tags):
            if self._answers_at is None:
                self._answers_at = time.monotonic()
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dispatch-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            timeout = self.tick - (time.monotonic() - last)
            if self._answers_at is not None:
                timeout = min(timeout, self._answers_at + self.debounce - time.monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, timeout))
            moment = time.monotonic()
            answered = self._answers_at is not None and moment >= self._answers_at + self.debounce
            if not answered and moment - last < self.tick:
                continue
            self._answers_at = None
            last = moment
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: keep the task alive
                log.exception("dispatch check failed")

    async def run_once(self) -> dict[str, Any]:
        now = self.dispatch.clock.now_int()
        async with self.dispatch.changes.unit_of_work() as tx:
            events = await store.select_events_to_watch(tx.session, now)
        done = {}
        for event_id in events:
            result = await self.dispatch.check(event_id)
            if result:
                done[event_id] = result
        return done
