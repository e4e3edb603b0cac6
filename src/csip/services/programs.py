"""The DER function set as devices read it and the utility drives it.

Groups form a tree (CSIP's seven levels are labels, not a fixed depth); a device sees the
FunctionSetAssignments of every group it belongs to and of their ancestors, and through them
the DERPrograms, their DERControls, DefaultDERControl and DERCurves (CSIP IG §6).

Reads are render-once: each program's state (controls with their EventStatus) is computed
once and cached until a write or the program's next time boundary (a start, end or
cancellation), which the server clock drives, so a moved clock shows new statuses at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from csip.domain.changes import (
    ControlsPublished,
    CurveAdded,
    DefaultControlChanged,
    DeviceRef,
    EverythingChanged,
    GroupCreated,
    GroupDeleted,
    MembershipChanged,
    ProgramChanged,
    ProgramDeleted,
    ResponseAdded,
)
from csip.domain.der import (
    DEFAULT_SETTINGS,
    RESPONSE_STATUSES,
    Control,
    Curve,
    DefaultControl,
    EventStatus,
    Group,
    Program,
    Status,
    check_base,
    event_statuses,
    is_active,
    is_over,
    next_boundary,
)
from csip.domain.devices import EndDevice, Principal, PrincipalKind, may_access
from csip.domain.groups import closure
from csip.domain.messaging import MessagingProgram
from csip.domain.paging import Page
from csip.errors import BadRequest, Forbidden, InvalidValues, NotFound
from csip.pki.identity import normalize_lfdi
from csip.sep2 import der_render as render
from csip.sep2 import hrefs
from csip.sep2.xml import parse_document, schema_error, text
from csip.services import changes as tag
from csip.services.cache import Entry
from csip.services.sep2 import Sep2Service
from csip.store import der as der_store
from csip.store import store as end_devices
from csip.store.der import DerStore
from csip.store.messaging import MessagingStore
from csip.store.uow import UnitOfWork


@dataclass(frozen=True)
class ProgramState:
    program: Program
    controls: tuple[Control, ...]
    statuses: Mapping[int, EventStatus]
    curves: tuple[Curve, ...]
    default: DefaultControl | None
    boundary: int | None
    #: What its renderings depend on: itself, its group, and every program it is ranked
    #: against (their controls can supersede its own).
    tags: tuple[str, ...] = ()

    @property
    def curve_href(self) -> dict[int, str]:
        return {c.id: c.href for c in self.curves}

    def active(self, now: int) -> list[Control]:
        return [c for c in self.controls if is_active(c, self.statuses[c.id], now)]

    def listed(self, now: int) -> list[Control]:
        """What a device's DERControlList holds: every control not yet over (the rest is
        history, read through the admin API)."""
        return [c for c in self.controls if not is_over(c, now)]

    def counts(self, now: int) -> dict[str, int]:
        return {
            "active": len(self.active(now)),
            "controls": len(self.listed(now)),
            "curves": len(self.curves),
        }

    @property
    def reply_to(self) -> str:
        return hrefs.response_list(self.program.id)


@dataclass(frozen=True)
class ControlSpec:
    """A DERControl as the utility asks for it (admin API)."""

    start: int
    duration: int
    base: Mapping[str, Any]
    description: str = ""
    randomize_start: int | None = None
    randomize_duration: int | None = None
    response_required: str | None = None


class StateBatches:
    """Misses of program states that arrive together load together.

    One write can invalidate the states of 1,000 programs (an event reaching every enrolled
    group); their DERControlLists are then polled at once, and loading each state on its own
    costs a transaction and four queries. A miss waits one loop turn for the others of that
    turn, and misses arriving while a batch loads form the next batch. Each caller still fills
    its own cache key through RenderCache.fetch, so the cache's staleness rules (a fill that
    raced with an invalidation of its tags is not stored) hold per key as before."""

    def __init__(self, load: Callable[[list[int]], Awaitable[Mapping[int, Entry]]]) -> None:
        self._load = load
        self._pending: dict[int, asyncio.Future[Entry]] = {}
        self._task: asyncio.Task[None] | None = None

    async def load(self, program_id: int) -> Entry:
        future = self._pending.get(program_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[program_id] = future
            if self._task is None:
                self._task = asyncio.ensure_future(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the other misses of this loop turn join
            while self._pending:
                batch, self._pending = self._pending, {}
                try:
                    entries = await self._load(list(batch))
                except Exception as error:  # every waiter of the batch sees it
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(error)
                            future.add_done_callback(_retrieved)
                    continue
                for program_id, future in batch.items():
                    if future.done():
                        continue
                    found = entries.get(program_id)
                    if found is None:
                        future.set_exception(NotFound(f"no DERProgram {program_id}"))
                        future.add_done_callback(_retrieved)
                    else:
                        future.set_result(found)
        finally:
            self._task = None


def _retrieved(future: asyncio.Future[Entry]) -> None:
    """A waiter that went away (a closed connection) leaves its batch's error unread."""
    if not future.cancelled():
        future.exception()


class ProgramService:
    def __init__(self, sep2: Sep2Service) -> None:
        self.sep2 = sep2
        self.cache = sep2.cache
        self.clock = sep2.clock
        self.changes = sep2.changes
        self.pen = sep2.settings.pen
        self.der = DerStore(sep2.store, sep2.settings.pen)
        self.messaging = MessagingStore(sep2.store)
        self._batches = StateBatches(self._load_states)

    # ---- cached derived data ---------------------------------------------------------
    async def _cached(self, key: tuple[Any, ...], tags: tuple[str, ...], load: Any) -> Any:
        entry = self.cache.get(key)
        if entry is None:

            async def fill() -> Entry:
                return Entry(b"", await load(), tags)

            entry = await self.cache.fetch(key, fill)
        return entry.owner

    async def groups(self) -> dict[int, Group]:
        async def load() -> dict[int, Group]:
            return {g.id: g for g in await self.der.groups()}

        result: dict[int, Group] = await self._cached(("groups",), (tag.GROUPS,), load)
        return result

    def _closure(self, groups: Mapping[int, Group], direct: set[int]) -> set[int]:
        """The groups and all their ancestors."""
        return closure(groups, direct)

    async def device_groups(self, device_id: int) -> list[Group]:
        """The FSAs a device sees, in creation order."""

        async def load() -> list[Group]:
            groups = await self.groups()
            direct = (await self.der.memberships([device_id])).get(device_id, set())
            return [groups[g] for g in sorted(self._closure(groups, direct))]

        tags = (tag.GROUPS, tag.member(device_id))
        result: list[Group] = await self._cached(("device-groups", device_id), tags, load)
        return result

    async def visible_groups(self, principal: Principal) -> frozenset[int]:
        """Every group some device of this client belongs to, with ancestors."""

        async def load() -> frozenset[int]:
            # one query answering groups, not the aggregator's 10,000 devices and memberships
            aggregator = principal.kind is PrincipalKind.AGGREGATOR
            direct = await self.der.member_groups(
                lfdi=principal.lfdi, aggregator_id=principal.aggregator_id if aggregator else None
            )
            return frozenset(self._closure(await self.groups(), direct))

        scope = principal.scope
        tags = (tag.GROUPS, tag.visible(scope), tag.edev_list(scope))
        result: frozenset[int] = await self._cached(("visible", scope), tags, load)
        return result

    async def _related(self) -> Mapping[int, frozenset[int]]:
        """Each group -> the groups that reach at least one common device with it (itself
        included): the programs it is ranked against for potentiallySuperseded."""

        async def load() -> dict[int, frozenset[int]]:
            groups = await self.groups()
            related: dict[int, set[int]] = {g: set() for g in groups}
            closures = {frozenset(self._closure(groups, {g})) for g in groups}
            memberships = await self.der.memberships()
            closures |= {frozenset(self._closure(groups, d)) for d in memberships.values()}
            for reach in closures:
                for a in reach:
                    related.setdefault(a, set()).update(reach)
            return {g: frozenset(r) for g, r in related.items()}

        result: dict[int, frozenset[int]] = await self._cached(
            ("related",), (tag.GROUPS, tag.RELATED), load
        )
        return result

    async def state(self, program_id: int) -> ProgramState:
        """A program with its controls' EventStatus now; cached until the next boundary."""
        key = ("program-state", program_id)
        entry = self.cache.get(key)
        if entry is not None:
            state: ProgramState = entry.owner
            return state
        entry = await self.cache.fetch(key, lambda: self._batches.load(program_id))
        state = entry.owner
        return state

    async def _load_states(self, program_ids: list[int]) -> dict[int, Entry]:
        """The states of every program whose miss arrived together (see StateBatches): one
        transaction for their programs, controls, curves and default controls, one for the
        controls of the programs they are ranked below."""
        data = await self.der.program_data(program_ids)
        now = self.clock.now_int()
        related_of = await self._related()
        plans = {}
        for pid, (program, *_) in data.items():
            related = sorted(related_of.get(program.group_id, {program.group_id}))
            ranked = [p for g in related for p in await self._programs_of(g) if p.id != pid]
            higher = [p.id for p in ranked if p.primacy < program.primacy]
            plans[pid] = (related, ranked, higher)
        wanted = sorted({h for _, _, higher in plans.values() for h in higher})
        above = await self.der.controls_by_program(wanted)
        entries = {}
        for pid, (program, controls, curves, default) in data.items():
            related, ranked, higher = plans[pid]
            # DERControlList order across those programs, as one query over them answers
            higher_controls = sorted(
                (c for h in higher for c in above[h]),
                key=lambda c: (c.start, -c.creation_time, -c.id),
            )
            statuses = event_statuses(controls, now, higher_controls)
            state = ProgramState(
                program,
                tuple(controls),
                statuses,
                tuple(curves),
                default,
                next_boundary([*controls, *higher_controls], now),
                (
                    tag.program(pid),
                    # a program created in a group it shares devices with is ranked against it
                    *(tag.group(g) for g in related),
                    *(tag.program(p.id) for p in ranked),
                ),
            )
            entries[pid] = Entry(b"", state, state.tags, state.boundary)
        return entries

    # ---- reads -------------------------------------------------------------------------
    async def _visible_program(self, principal: Principal, program_id: int) -> ProgramState:
        state = await self.state(program_id)
        if state.program.group_id not in await self.visible_groups(principal):
            raise NotFound(f"no DERProgram {program_id}")
        return state

    async def _render(
        self, key: tuple[Any, ...], tags: tuple[str, ...], expires: int | None, build: Any
    ) -> bytes:
        entry = self.cache.get(key)
        if entry is None:

            async def fill() -> Entry:
                return Entry(await build(), None, tags, expires)

            entry = await self.cache.fetch(key, fill)
        return entry.body

    async def fsa_list(self, principal: Principal, device_id: int, page: Page) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)
        groups = await self.device_groups(device.id)

        async def build() -> tuple[bytes, int]:
            chosen = groups[page.start : page.start + page.limit]
            counts = [
                (
                    g,
                    len(await self._programs_of(g.id)),
                    len(await self.messaging_programs_of(g.id)),
                )
                for g in chosen
            ]
            rates = await self.sep2.poll_rates()
            href = f"{device.href}/fsa"
            body = render.function_set_assignments_list(
                href, len(groups), counts, rates["FunctionSetAssignmentsList"]
            )
            return body, len(groups)

        tags = (
            tag.GROUPS,
            tag.member(device_id),
            tag.SETTINGS,
            tag.edev(device_id),
            *(tag.group(g.id) for g in groups),
            *(tag.messaging_group(g.id) for g in groups),
        )
        key = ("fsa-list", device_id, page.key())
        return await self.cache.fetch_page(key, page, tags, build)

    async def associated_programs(self, principal: Principal, device_id: int, page: Page) -> bytes:
        """AssociatedDERProgramList of the device's DER: programs of all its groups, by
        primacy (the order a device resolves them in)."""
        device = await self.sep2.accessible_device(principal, device_id)
        groups = await self.device_groups(device.id)

        async def programs() -> list[Program]:
            found = []
            for group in groups:
                found += await self._programs_of(group.id)
            return sorted(found, key=lambda p: (p.primacy, p.id))

        key = ("assoc-derp", device_id, page.key())
        tags = (
            tag.GROUPS,
            tag.member(device_id),
            tag.SETTINGS,
            tag.edev(device_id),
            *(tag.group(g.id) for g in groups),
        )
        href = f"{device.href}/der/1/derp"
        return await self._program_list(key, tags, href, programs, page)

    async def _program_list(
        self,
        key: tuple[Any, ...],
        tags: tuple[str, ...],
        href: str,
        programs: Callable[[], Awaitable[list[Program]]],
        page: Page,
    ) -> bytes:
        """A DERProgramList, cached until a write or the next boundary of its programs."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached.body
        now = self.clock.now_int()
        states = [await self.state(p.id) for p in await programs()]
        expires = min((s.boundary for s in states if s.boundary), default=None)
        tags = (*tags, *(tag.program(s.program.id) for s in states))

        async def build() -> tuple[bytes, int]:
            chosen = states[page.start : page.start + page.limit]
            rows = [(s.program, s.counts(now), s.default is not None) for s in chosen]
            rates = await self.sep2.poll_rates()
            body = render.der_program_list(href, len(states), rows, rates["DERProgramList"])
            return body, len(states)

        return await self.cache.fetch_page(key, page, tags, build, expires)

    async def visible_group(self, principal: Principal, group_id: int) -> Group:
        group = (await self.groups()).get(group_id)
        if group is None or group_id not in await self.visible_groups(principal):
            raise NotFound(f"no FunctionSetAssignments {group_id}")
        return group

    async def fsa(self, principal: Principal, group_id: int) -> bytes:
        group = await self.visible_group(principal, group_id)

        async def build() -> bytes:
            programs = len(await self._programs_of(group_id))
            messaging = len(await self.messaging_programs_of(group_id))
            return render.function_set_assignments(group, programs, messaging)

        tags = (tag.GROUPS, tag.group(group_id), tag.messaging_group(group_id))
        return await self._render(("fsa", group_id), tags, None, build)

    async def program_list(self, principal: Principal, group_id: int, page: Page) -> bytes:
        await self.visible_group(principal, group_id)

        async def programs() -> list[Program]:
            return await self._programs_of(group_id)

        key = ("derp-list", group_id, page.key())
        tags = (tag.GROUPS, tag.group(group_id), tag.SETTINGS)
        return await self._program_list(key, tags, hrefs.program_list(group_id), programs, page)

    async def _programs_of(self, group_id: int) -> list[Program]:
        async def load() -> list[Program]:
            return await self.der.programs(group_id)

        result: list[Program] = await self._cached(
            ("programs-of", group_id), (tag.group(group_id),), load
        )
        return result

    async def messaging_programs_of(self, group_id: int) -> list[MessagingProgram]:
        """The group's MessagingProgram (none until its first message): the FSA links it."""

        async def load() -> list[MessagingProgram]:
            return await self.messaging.programs(group_id)

        result: list[MessagingProgram] = await self._cached(
            ("msg-programs-of", group_id), (tag.messaging_group(group_id),), load
        )
        return result

    async def program(self, principal: Principal, program_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)

        async def build() -> bytes:
            counts = state.counts(self.clock.now_int())
            return render.der_program(state.program, counts, state.default is not None)

        key = ("derp", program_id)
        return await self._render(key, state.tags, state.boundary, build)

    async def control_list(
        self, principal: Principal, program_id: int, page: Page, active_only: bool = False
    ) -> bytes:
        state = await self._visible_program(principal, program_id)

        async def build() -> tuple[bytes, int]:
            now = self.clock.now_int()
            controls = state.active(now) if active_only else state.listed(now)
            chosen = controls[page.start : page.start + page.limit]
            rows = [(c, state.statuses[c.id]) for c in chosen]
            suffix = "actderc" if active_only else "derc"
            href = f"{state.program.href}/{suffix}"
            body = render.der_control_list(
                href, len(controls), rows, state.reply_to, state.curve_href
            )
            return body, len(controls)

        key = ("derc-list", program_id, active_only, page.key())
        return await self.cache.fetch_page(key, page, state.tags, build, state.boundary)

    async def control(self, principal: Principal, program_id: int, control_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)
        control = next((c for c in state.controls if c.id == control_id), None)
        if control is None:
            raise NotFound(f"no DERControl {control_id} in DERProgram {program_id}")

        async def build() -> bytes:
            assert control is not None
            status = state.statuses[control.id]
            return render.der_control(control, status, state.reply_to, state.curve_href)

        key = ("derc", program_id, control_id)
        return await self._render(key, state.tags, state.boundary, build)

    async def default_control(self, principal: Principal, program_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)
        default = state.default
        if default is None:
            raise NotFound(f"DERProgram {program_id} has no DefaultDERControl")

        async def build() -> bytes:
            href = f"{state.program.href}/dderc"
            return render.default_der_control(default, href, state.curve_href)

        return await self._render(("dderc", program_id), state.tags, None, build)

    async def curve_list(self, principal: Principal, program_id: int, page: Page) -> bytes:
        state = await self._visible_program(principal, program_id)

        async def build() -> tuple[bytes, int]:
            chosen = state.curves[page.start : page.start + page.limit]
            total = len(state.curves)
            return render.der_curve_list(f"{state.program.href}/dc", total, chosen), total

        key = ("dc-list", program_id, page.key())
        return await self.cache.fetch_page(key, page, state.tags, build)

    async def curve(self, principal: Principal, program_id: int, curve_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)
        curve = next((c for c in state.curves if c.id == curve_id), None)
        if curve is None:
            raise NotFound(f"no DERCurve {curve_id} in DERProgram {program_id}")
        found = curve

        async def build() -> bytes:
            return render.der_curve(found)

        return await self._render(("dc", program_id, curve_id), state.tags, None, build)

    # ---- responses ------------------------------------------------------------------------
    async def _device_for_response(self, principal: Principal, lfdi: str) -> EndDevice:
        device = await self.sep2.store.get_end_device_by_lfdi(normalize_lfdi(lfdi))
        if device is None or not may_access(principal, device):
            raise Forbidden(f"endDeviceLFDI {lfdi} is not a device this client speaks for")
        return device

    async def post_response(self, principal: Principal, program_id: int, body: bytes) -> str:
        """A DERControlResponse to a control's replyTo (CSIP IG §6, CORE-022)."""
        root = parse_document(
            body,
            self.sep2.schemas.validator,
            ("DERControlResponse", "Response"),
            self.sep2.settings.max_body_bytes,
        )
        state = await self._visible_program(principal, program_id)
        device = await self._device_for_response(principal, text(root, "endDeviceLFDI") or "")
        subject = (text(root, "subject") or "").upper()
        control = next((c for c in state.controls if c.mrid == subject), None)
        if control is None:
            raise InvalidValues(f"subject {subject} is not a DERControl of DERProgram {program_id}")
        if state.program.group_id not in {g.id for g in await self.device_groups(device.id)}:
            raise InvalidValues(f"DERControl {subject} does not apply to {device.lfdi}")
        raw_status = text(root, "status")
        if raw_status is None or int(raw_status) not in RESPONSE_STATUSES:
            known = ", ".join(str(s) for s in RESPONSE_STATUSES)
            raise InvalidValues(f"status {raw_status} is not a DER response status ({known})")
        now = self.clock.now_int()
        created = int(text(root, "createdDateTime") or now)
        async with self.changes.unit_of_work() as tx:
            response_id = await der_store.insert_response(
                tx.session, control.id, device.id, device.lfdi, int(raw_status), created, now
            )
            tx.record(ResponseAdded(program_id))
        return f"{hrefs.response_list(program_id)}/{response_id}"

    async def _my_responses(self, principal: Principal, program_id: int) -> list[dict[str, Any]]:
        """The responses to a program that this client's own devices posted, newest first."""

        async def load() -> list[dict[str, Any]]:
            mine = []
            for response in await self.der.responses(program_id=program_id):
                device = await self.sep2.store.get_end_device_by_lfdi(response["lfdi"])
                if device is not None and may_access(principal, device):
                    mine.append(response)
            return mine

        key = ("my-responses", program_id, principal.scope)
        tags = (tag.responses(program_id), tag.program(program_id), tag.edev_list(principal.scope))
        result: list[dict[str, Any]] = await self._cached(key, tags, load)
        return result

    async def response_list(self, principal: Principal, program_id: int, page: Page) -> bytes:
        """The responses this client's own devices posted (never other clients')."""
        await self._visible_program(principal, program_id)

        async def build() -> tuple[bytes, int]:
            mine = await self._my_responses(principal, program_id)
            chosen = mine[page.start : page.start + page.limit]
            href = hrefs.response_list(program_id)
            return render.response_list(href, len(mine), chosen), len(mine)

        key = ("rsp-list", program_id, principal.scope, page.key())
        tags = (tag.responses(program_id), tag.program(program_id), tag.edev_list(principal.scope))
        return await self.cache.fetch_page(key, page, tags, build)

    async def response(self, principal: Principal, program_id: int, response_id: int) -> bytes:
        """GET of a posted Response (its Location): only for the client that may read it."""
        await self._visible_program(principal, program_id)
        mine = await self._my_responses(principal, program_id)
        found = next((r for r in mine if r["id"] == response_id), None)
        if found is None:
            raise NotFound(f"no Response {response_id} in {hrefs.response_list(program_id)}")
        return render.response(hrefs.response_list(program_id), found)

    async def response_set(self, principal: Principal, program_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)

        async def build() -> bytes:
            count = len(await self._my_responses(principal, program_id))
            return render.response_set(state.program, count)

        key = ("rsps-one", program_id, principal.scope)
        scope = principal.scope
        tags = (
            tag.responses(program_id),
            tag.program(program_id),
            tag.group(state.program.group_id),
            tag.GROUPS,
            tag.visible(scope),
            tag.edev_list(scope),
        )
        return await self._render(key, tags, None, build)

    async def response_set_list(self, principal: Principal, page: Page) -> bytes:
        """Each ResponseSet counts this client's responses to its program; the rendering
        depends on the listed programs' responses only (their tags are known once built)."""
        visible = await self.visible_groups(principal)
        key = ("rsps", principal.scope, page.key())
        entry = self.cache.get(key)
        if entry is None:
            generation = self.cache.generation
            programs = [p for p in await self.der.programs() if p.group_id in visible]
            chosen = programs[page.start : page.start + page.limit]
            rows = [(p, len(await self._my_responses(principal, p.id))) for p in chosen]
            scope = principal.scope
            tags = (
                tag.GROUPS,
                tag.visible(scope),
                tag.edev_list(scope),
                *(tag.group(g) for g in sorted(visible)),
                *(tag.responses(p.id) for p in chosen),
            )
            body = render.response_set_list("/rsps", len(programs), rows)
            entry = Entry(body, None, tags, keep=page.kept(len(programs)))
            self.cache.put(key, entry, generation)
        return entry.body

    # ---- the utility's side (admin API) ----------------------------------------------------
    async def create_group(self, description: str, level: str | None, parent: int | None) -> Group:
        async with self.changes.unit_of_work() as tx:
            return await self._create_group(tx, description, level, parent)

    async def _create_group(
        self, tx: UnitOfWork, description: str, level: str | None, parent: int | None
    ) -> Group:
        now = self.clock.now_int()
        group = await der_store.insert_group(tx.session, description, level, parent, now, self.pen)
        tx.record(GroupCreated(group.id))
        return group

    async def _device(self, tx: UnitOfWork, lfdi: str) -> EndDevice:
        device = await end_devices.select_end_device_by_lfdi(tx.session, normalize_lfdi(lfdi))
        if device is None:
            raise NotFound(f"no EndDevice with lFDI {lfdi}")
        return device

    async def set_member(self, group_id: int, lfdi: str, member: bool) -> None:
        async with self.changes.unit_of_work() as tx:
            await self._set_member(tx, group_id, await self._device(tx, lfdi), member)

    async def _set_member(
        self, tx: UnitOfWork, group_id: int, device: EndDevice, member: bool
    ) -> None:
        if member:
            changed = bool(await der_store.insert_members(tx.session, group_id, [device.id]))
        else:
            changed = await der_store.delete_member(tx.session, group_id, device.id)
        if changed:
            tx.record(MembershipChanged(group_id, (_ref(device),)))

    async def add_members(self, group_id: int, lfdis: Sequence[str]) -> int:
        """Put many EndDevices in a group at once (all must exist; one unit of work)."""
        wanted = [normalize_lfdi(x) for x in lfdis]
        async with self.changes.unit_of_work() as tx:
            found = await end_devices.select_end_devices_by_lfdi(tx.session, wanted)
            missing = [x for x in wanted if x not in found]
            if missing:
                raise NotFound(f"no EndDevice with lFDI {', '.join(missing[:5])}")
            by_id = {found[x].id: found[x] for x in wanted}
            added = await der_store.insert_members(tx.session, group_id, list(by_id))
            if added:
                tx.record(MembershipChanged(group_id, tuple(_ref(by_id[d]) for d in added)))
            return len(added)

    async def create_program(self, group_id: int, description: str, primacy: int) -> Program:
        _check_primacy(primacy)
        async with self.changes.unit_of_work() as tx:
            return await self._create_program(tx, group_id, description, primacy)

    async def _create_program(
        self, tx: UnitOfWork, group_id: int, description: str, primacy: int
    ) -> Program:
        now = self.clock.now_int()
        program = await der_store.insert_program(
            tx.session, group_id, description, primacy, now, self.pen
        )
        tx.record(ProgramChanged(program.id, group_id, created=True))
        return program

    async def update_program(
        self, program_id: int, description: str | None, primacy: int | None
    ) -> Program:
        if primacy is not None:
            _check_primacy(primacy)
        async with self.changes.unit_of_work() as tx:
            program = await der_store.update_program(tx.session, program_id, description, primacy)
            tx.record(ProgramChanged(program.id, program.group_id))
            return program

    async def delete_program(self, program_id: int) -> list[Control]:
        """Delete a program (admin): its scheduled and active controls are cancelled (never
        deleted on the wire) and it leaves every device-facing list (DERProgramList,
        AssociatedDERProgramList, FSA counts, ResponseSetList). A device holding its href still
        reads it, every control Cancelled; the admin API keeps its controls' history."""
        async with self.changes.unit_of_work() as tx:
            return await self.delete_program_in(tx, program_id)

    async def delete_program_in(self, tx: UnitOfWork, program_id: int) -> list[Control]:
        """delete_program inside the caller's unit of work (a group leaving a program)."""
        program = await der_store.select_program(tx.session, program_id)
        cancelled = await der_store.delete_program(tx.session, program_id, self.clock.now_int())
        assert program is not None  # delete_program found it live
        tx.record(ProgramDeleted(program.id, program.group_id))
        if cancelled:
            tx.record(ControlsPublished(program.id, tuple(c.id for c in cancelled)))
        return cancelled

    async def delete_group(self, group_id: int) -> list[Control]:
        """Delete a group that has no sub-groups: its programs as delete_program, and it leaves
        its members' FunctionSetAssignmentsLists; its own hrefs answer 404 from then on."""
        async with self.changes.unit_of_work() as tx:
            deleted = await der_store.delete_group(tx.session, group_id, self.clock.now_int())
            for program in deleted.programs:
                tx.record(ProgramDeleted(program.id, program.group_id))
                ids = tuple(c.id for c in deleted.cancelled if c.program_id == program.id)
                if ids:
                    tx.record(ControlsPublished(program.id, ids))
            tx.record(GroupDeleted(group_id))
            found = await end_devices.select_end_devices(tx.session, deleted.members)
            if found:
                tx.record(MembershipChanged(group_id, tuple(_ref(d) for d in found)))
        return list(deleted.cancelled)

    async def program_for(self, *, lfdi: str | None, group_id: int | None, primacy: int) -> Program:
        """The program of this primacy in a group, or in a device's own group (both made as
        needed): how a lab targets one device or one group in a single call."""
        async with self.changes.unit_of_work() as tx:
            return await self._program_for(tx, lfdi=lfdi, group_id=group_id, primacy=primacy)

    async def _program_for(
        self, tx: UnitOfWork, *, lfdi: str | None, group_id: int | None, primacy: int
    ) -> Program:
        if (lfdi is None) == (group_id is None):
            raise BadRequest("give exactly one of lfdi and group")
        _check_primacy(primacy)
        s = tx.session
        if lfdi is not None:
            device = await self._device(tx, lfdi)
            label = f"EndDevice {device.sfdi}"
            groups = await der_store.select_groups(s)
            direct = (await der_store.select_memberships(s, [device.id])).get(device.id, set())
            own = [
                g for g in direct if groups[g].level == "device" and groups[g].description == label
            ]
            if own:
                group_id = own[0]
            else:
                group_id = (await self._create_group(tx, label, "device", None)).id
                await self._set_member(tx, group_id, device, True)
        assert group_id is not None
        for program in await der_store.select_programs(s, group_id):
            if program.primacy == primacy:
                return program
        return await self._create_program(tx, group_id, f"primacy {primacy}", primacy)

    def _validate(self, document: bytes, what: str) -> None:
        """Every control we publish is valid 2030.5 before it is stored (Int16 ranges ...)."""
        error = schema_error(self.sep2.schemas.validator, etree.fromstring(document))
        if error is not None:
            raise InvalidValues(f"{what} would not be valid 2030.5: {error}")

    async def create_controls(self, program_id: int, specs: Sequence[ControlSpec]) -> list[Control]:
        """Publish one or more DERControls in a program, all or none."""
        async with self.changes.unit_of_work() as tx:
            return await self._create_controls(tx, program_id, specs)

    async def create_targeted_control(
        self, spec: ControlSpec, *, lfdi: str | None, group_id: int | None, primacy: int
    ) -> tuple[Program, Control]:
        """POST /api/controls: find or make the program, then publish, in one unit of work:
        an invalid control leaves no group, membership or program behind."""
        async with self.changes.unit_of_work() as tx:
            program = await self._program_for(tx, lfdi=lfdi, group_id=group_id, primacy=primacy)
            (control,) = await self._create_controls(tx, program.id, [spec])
            return program, control

    async def _create_controls(
        self, tx: UnitOfWork, program_id: int, specs: Sequence[ControlSpec]
    ) -> list[Control]:
        await self._live_program(tx, program_id)
        curves = {c.id: c for c in await der_store.select_curves(tx.session, program_id)}
        now = self.clock.now_int()
        controls = []
        for index, spec in enumerate(specs):
            self._check_spec(spec, curves, now)
            controls.append(_draft(spec, program_id, now, -(index + 1)))
        created = await der_store.insert_controls(tx.session, controls, self.pen)
        tx.record(ControlsPublished(program_id, tuple(c.id for c in created)))
        return created

    async def publish_schedules(
        self, tx: UnitOfWork, schedules: Mapping[int, Sequence[ControlSpec]]
    ) -> dict[int, list[Control]]:
        """Inside the caller's unit of work, publish a schedule in each of many programs (the
        program engine: one event, every enrolled group). Each distinct control is checked
        and validated against the XSD once, however many programs receive it; curves are not
        used (an engine schedule carries plain modes)."""
        now = self.clock.now_int()
        checked: set[tuple[Any, ...]] = set()
        drafts: list[Control] = []
        for program_id, specs in schedules.items():
            for spec in specs:
                key = _spec_key(spec)
                if key not in checked:
                    self._check_spec(spec, {}, now)
                    checked.add(key)
                drafts.append(_draft(spec, program_id, now, -(len(drafts) + 1)))
        created = await der_store.insert_controls(tx.session, drafts, self.pen)
        found: dict[int, list[Control]] = {pid: [] for pid in schedules}
        for control in created:
            found[control.program_id].append(control)
        for program_id, controls in found.items():
            if controls:
                tx.record(ControlsPublished(program_id, tuple(c.id for c in controls)))
        return found

    async def cancel_controls(
        self, tx: UnitOfWork, control_ids: Sequence[int], randomized: bool
    ) -> list[Control]:
        """Inside the caller's unit of work: cancel those of the controls not yet over."""
        now = self.clock.now_int()
        cancelled = await der_store.update_controls_cancelled(
            tx.session, control_ids, now, randomized
        )
        _record_published(tx, cancelled)
        return cancelled

    def _check_spec(self, spec: ControlSpec, curves: Mapping[int, Curve], now: int) -> Control:
        if spec.duration <= 0:
            raise InvalidValues("duration must be positive")
        if spec.response_required is not None and not _is_hex8(spec.response_required):
            raise InvalidValues("responseRequired is one hex byte, e.g. 03")
        check_base(spec.base, self.sep2.settings.profile, curves)
        control = _draft(spec, 0, now, -1)
        status = EventStatus(Status.SCHEDULED, now)
        curve_hrefs = {c.id: c.href for c in curves.values()}
        self._validate(
            render.der_control(control, status, "/rsps/0/rsp", curve_hrefs), "DERControl"
        )
        return control

    async def _live_program(self, tx: UnitOfWork, program_id: int) -> Program:
        program = await der_store.select_program(tx.session, program_id)
        if program is None:
            raise NotFound(f"no DERProgram {program_id}")
        if program.deleted_at is not None:
            raise NotFound(f"DERProgram {program_id} was deleted")
        return program

    async def cancel(
        self,
        *,
        program_id: int | None = None,
        device_lfdi: str | None = None,
        control_id: int | None = None,
        randomized: bool = False,
    ) -> list[Control]:
        """Cancel one control, or every scheduled/active one of a program or a device."""
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            if device_lfdi is not None:
                device = await self._device(tx, device_lfdi)
                groups = await der_store.select_groups(s)
                direct = (await der_store.select_memberships(s, [device.id])).get(device.id, set())
                group_ids = closure(groups, direct)
                program_ids = [
                    p.id for p in await der_store.select_programs(s) if p.group_id in group_ids
                ]
            elif program_id is not None:
                program_ids = [program_id]
            else:
                program_ids = []
            if control_id is not None:
                control = await der_store.select_control(s, control_id)
                if control is None:
                    raise NotFound(f"no DERControl {control_id}")
                candidates = [control]
            else:
                candidates = await der_store.select_controls(s, program_ids)
            now = self.clock.now_int()
            cancelled = await der_store.update_controls_cancelled(
                s, [c.id for c in candidates], now, randomized
            )
            _record_published(tx, cancelled)
            return cancelled

    async def put_default_control(
        self, program_id: int, base: Mapping[str, Any], settings: Mapping[str, int]
    ) -> DefaultControl:
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise InvalidValues(f"unknown DefaultDERControl settings: {', '.join(sorted(unknown))}")
        async with self.changes.unit_of_work() as tx:
            await self._live_program(tx, program_id)
            curves = {c.id: c for c in await der_store.select_curves(tx.session, program_id)}
            check_base(base, self.sep2.settings.profile, curves)
            now = self.clock.now_int()
            draft = DefaultControl(program_id, "0" * 32, base, settings, 0, now)
            curve_hrefs = {c.id: c.href for c in curves.values()}
            self._validate(
                render.default_der_control(draft, "/x", curve_hrefs), "DefaultDERControl"
            )
            default = await der_store.update_default_control(
                tx.session, program_id, base, settings, now, self.pen
            )
            tx.record(DefaultControlChanged(program_id))
            return default

    async def create_curve(self, curve: Curve) -> Curve:
        if not 1 <= len(curve.points) <= 10:
            raise InvalidValues("a DERCurve has 1 to 10 points")
        self._validate(render.der_curve(replace(curve, id=0, mrid="0" * 32)), "DERCurve")
        async with self.changes.unit_of_work() as tx:
            created = await der_store.insert_curve(tx.session, curve, self.pen)
            tx.record(CurveAdded(curve.program_id))
            return created

    async def reset(self) -> None:
        """Lab reset: every group, program, control, default, curve and response."""
        async with self.changes.unit_of_work() as tx:
            await der_store.delete_all(tx.session)
            tx.record(EverythingChanged())

    async def group_devices(self, group_id: int) -> list[EndDevice]:
        """Every EndDevice in a group or any group below it, in id order."""
        groups = await self.groups()
        if group_id not in groups:
            raise NotFound(f"no group {group_id}")
        below = {g for g in groups if group_id in self._closure(groups, {g})}
        memberships = await self.der.memberships()
        ids = sorted(d for d, direct in memberships.items() if direct & below)
        devices = [await self.sep2.store.get_end_device(i) for i in ids]
        return [d for d in devices if d is not None]

    async def responses(
        self, *, program_id: int | None = None, lfdi: str | None = None
    ) -> list[dict[str, Any]]:
        device_id = None
        if lfdi is not None:
            device = await self.sep2.store.get_end_device_by_lfdi(normalize_lfdi(lfdi))
            if device is None:
                raise NotFound(f"no EndDevice with lFDI {lfdi}")
            device_id = device.id
        return await self.der.responses(program_id=program_id, device_id=device_id)


def _draft(spec: ControlSpec, program_id: int, now: int, ident: int) -> Control:
    """The Control a spec becomes once stored (id and mRID are the store's)."""
    return Control(
        id=ident,
        mrid="0" * 32,
        program_id=program_id,
        description=spec.description,
        creation_time=now,
        start=spec.start,
        duration=spec.duration,
        base=dict(spec.base),
        randomize_start=spec.randomize_start,
        randomize_duration=spec.randomize_duration,
        response_required=spec.response_required,
    )


def _spec_key(spec: ControlSpec) -> tuple[Any, ...]:
    return (
        spec.start,
        spec.duration,
        repr(sorted(spec.base.items())),
        spec.description,
        spec.randomize_start,
        spec.randomize_duration,
        spec.response_required,
    )


def _record_published(tx: UnitOfWork, controls: Sequence[Control]) -> None:
    """One ControlsPublished per program, programs in id order (grouped in one pass: a
    program-engine event cancels 12,000 controls in 1,000 programs)."""
    by_program: dict[int, list[int]] = {}
    for c in controls:
        by_program.setdefault(c.program_id, []).append(c.id)
    for pid in sorted(by_program):
        tx.record(ControlsPublished(pid, tuple(by_program[pid])))


def _ref(device: EndDevice) -> DeviceRef:
    return DeviceRef(device.id, device.lfdi, device.aggregator_id)


def _check_primacy(primacy: int) -> None:
    if not 0 <= primacy <= 255:
        raise BadRequest("primacy is 0..255 (lower is more important)")


def _is_hex8(value: str) -> bool:
    return len(value) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in value)
