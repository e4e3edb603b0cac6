"""The Messaging function set (IEEE 2030.5 §10.7) as devices read it and the utility writes it.

Each group (FunctionSetAssignments) has at most one MessagingProgram, made the first time a
message is written to the group; its TextMessages are events (never deleted, cancelled when
withdrawn). The admin API writes messages one at a time through `post`; the program engine
writes the alerts and notices of an OpenADR event inside the event's own unit of work through
`publish` and withdraws them with `cancel_source`, so an event and its messages commit whole
or not at all.

Reads are render-once like the DER function set's: a program's messages with their
EventStatus are computed once and cached until a write or the next moment a message starts,
ends or leaves the list, which the server clock drives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from csip.domain.changes import MessagesPublished, MessagingProgramChanged
from csip.domain.der import EventStatus, Status
from csip.domain.devices import Principal
from csip.domain.dispatch import MessageDraft
from csip.domain.messaging import (
    DEFAULT_LOCALE,
    DEFAULT_PRIMACY,
    MessagingProgram,
    TextMessage,
    check_message,
    is_listed,
    is_shown,
    message_status,
    next_boundary,
)
from csip.domain.paging import Page
from csip.errors import BadRequest, InvalidValues, NotFound
from csip.sep2 import hrefs
from csip.sep2 import messaging_render as render
from csip.sep2.xml import schema_error
from csip.services import changes as tag
from csip.services.cache import Entry
from csip.services.programs import ProgramService
from csip.store import messaging as store
from csip.store.uow import UnitOfWork


@dataclass(frozen=True)
class MessagingState:
    """A program and every message it ever had, as of one moment's clock."""

    program: MessagingProgram
    messages: tuple[TextMessage, ...]
    #: The next moment a message starts, ends, or leaves the list.
    boundary: int | None

    @property
    def tags(self) -> tuple[str, ...]:
        return (tag.messaging(self.program.id), tag.messaging_group(self.program.group_id))

    def listed(self, now: int) -> list[TextMessage]:
        return [m for m in self.messages if is_listed(m, now)]

    def shown(self, now: int) -> list[TextMessage]:
        return [m for m in self.messages if is_shown(m, now)]


class MessagingService:
    def __init__(self, programs: ProgramService) -> None:
        self.programs = programs
        self.sep2 = programs.sep2
        self.cache = programs.cache
        self.clock = programs.clock
        self.changes = programs.changes
        self.pen = self.sep2.settings.pen
        self.store = programs.messaging

    # ---- cached derived data -----------------------------------------------------------------
    async def state(self, program_id: int) -> MessagingState:
        key = ("msg-state", program_id)
        entry = self.cache.get(key)
        if entry is None:
            entry = await self.cache.fetch(key, lambda: self._load_state(program_id))
        state: MessagingState = entry.owner
        return state

    async def _load_state(self, program_id: int) -> Entry:
        program = await self.store.program(program_id)
        if program is None:
            raise NotFound(f"no MessagingProgram {program_id}")
        messages = tuple(await self.store.messages([program_id]))
        state = MessagingState(program, messages, next_boundary(messages, self.clock.now_int()))
        return Entry(b"", state, state.tags, state.boundary)

    async def _visible_program(self, principal: Principal, program_id: int) -> MessagingState:
        """Same rule as a DERProgram: a device sees its groups' programs, an aggregator those
        of its devices; anything else does not exist for it (404)."""
        state = await self.state(program_id)
        if state.program.group_id not in await self.programs.visible_groups(principal):
            raise NotFound(f"no MessagingProgram {program_id}")
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

    # ---- reads (2030.5) ------------------------------------------------------------------------
    async def program_list(self, principal: Principal, group_id: int, page: Page) -> bytes:
        """/fsa/{id}/msg: the group's MessagingProgram, once it has one."""
        await self.programs.visible_group(principal, group_id)
        key = ("msg-list", group_id, page.key())
        cached = self.cache.get(key)
        if cached is not None:
            return cached.body
        states = [
            await self.state(p.id) for p in await self.programs.messaging_programs_of(group_id)
        ]
        expires = min((s.boundary for s in states if s.boundary), default=None)
        tags = (
            tag.GROUPS,
            tag.group(group_id),
            tag.messaging_group(group_id),
            tag.SETTINGS,
            *(t for s in states for t in s.tags),
        )

        async def build() -> tuple[bytes, int]:
            now = self.clock.now_int()
            chosen = states[page.start : page.start + page.limit]
            rows = [(s.program, len(s.listed(now)), len(s.shown(now))) for s in chosen]
            rates = await self.sep2.poll_rates()
            href = hrefs.messaging_program_list(group_id)
            body = render.messaging_program_list(
                href, len(states), rows, rates["MessagingProgramList"]
            )
            return body, len(states)

        return await self.cache.fetch_page(key, page, tags, build, expires)

    async def program(self, principal: Principal, program_id: int) -> bytes:
        state = await self._visible_program(principal, program_id)

        async def build() -> bytes:
            now = self.clock.now_int()
            return render.messaging_program(
                state.program, len(state.listed(now)), len(state.shown(now))
            )

        return await self._render(("msg", program_id), state.tags, state.boundary, build)

    async def message_list(
        self, principal: Principal, program_id: int, page: Page, active_only: bool = False
    ) -> bytes:
        """/msg/{id}/txt (every message not yet over) or /msg/{id}/acttxt (those shown now)."""
        state = await self._visible_program(principal, program_id)

        async def build() -> tuple[bytes, int]:
            now = self.clock.now_int()
            messages = state.shown(now) if active_only else state.listed(now)
            chosen = messages[page.start : page.start + page.limit]
            rows = [(m, message_status(m, now)) for m in chosen]
            href = (
                hrefs.active_text_message_list(program_id)
                if active_only
                else hrefs.text_message_list(program_id)
            )
            return render.text_message_list(href, len(messages), rows), len(messages)

        key = ("txt-list", program_id, active_only, page.key())
        return await self.cache.fetch_page(key, page, state.tags, build, state.boundary)

    async def message(self, principal: Principal, program_id: int, message_id: int) -> bytes:
        """One TextMessage by its href: readable for as long as it exists (history too)."""
        state = await self._visible_program(principal, program_id)
        found = next((m for m in state.messages if m.id == message_id), None)
        if found is None:
            raise NotFound(f"no TextMessage {message_id} in MessagingProgram {program_id}")
        message = found

        async def build() -> bytes:
            return render.text_message(message, message_status(message, self.clock.now_int()))

        key = ("txt", program_id, message_id)
        return await self._render(key, state.tags, state.boundary, build)

    # ---- writes inside the caller's unit of work (the program engine) -------------------------
    async def publish(
        self,
        tx: UnitOfWork,
        group_id: int,
        drafts: Sequence[MessageDraft],
        *,
        source: str | None = None,
    ) -> list[TextMessage]:
        """Write messages to a group's devices in the caller's unit of work: the group's
        MessagingProgram is made if it has none; every message is checked, and rendered and
        validated against the profile's schema, before any is stored (all or none)."""
        if not drafts:
            return []
        if source is not None and not 0 < len(source) <= 128:
            raise InvalidValues("a message source is 1..128 characters")
        now = self.clock.now_int()
        messages = []
        for index, draft in enumerate(drafts):
            check_message(draft.start, draft.duration, draft.text, draft.priority, draft.originator)
            message = TextMessage(
                id=index + 1,
                mrid="0" * 32,
                program_id=0,
                creation_time=now,
                start=draft.start,
                duration=draft.duration,
                text=draft.text,
                priority=draft.priority,
                originator=draft.originator or None,
                source=source,
            )
            self._validate(render.text_message(message, EventStatus(Status.SCHEDULED, now)))
            messages.append(message)
        program = await self._program_for(tx, group_id)
        messages = [replace(m, program_id=program.id) for m in messages]
        created = await store.insert_text_messages(tx.session, messages, self.pen)
        tx.record(MessagesPublished(program.id, group_id, tuple(m.id for m in created)))
        return created

    async def cancel_source(self, tx: UnitOfWork, source: str) -> list[TextMessage]:
        """Cancel, in the caller's unit of work, every message of this source that is not over
        or cancelled yet (an OpenADR event deleted or replaced: "event:<id>")."""
        found = await store.select_text_messages_of_source(tx.session, source)
        return await self._cancel(tx, [m.id for m in found])

    async def cancel_messages(
        self, tx: UnitOfWork, message_ids: Sequence[int]
    ) -> list[TextMessage]:
        """Cancel these messages (those not over or cancelled yet) in the caller's unit."""
        return await self._cancel(tx, message_ids)

    async def _cancel(self, tx: UnitOfWork, message_ids: Sequence[int]) -> list[TextMessage]:
        now = self.clock.now_int()
        cancelled = await store.update_text_messages_cancelled(tx.session, message_ids, now)
        for program_id in sorted({m.program_id for m in cancelled}):
            program = await store.select_messaging_program(tx.session, program_id)
            assert program is not None  # its message was found
            ids = tuple(m.id for m in cancelled if m.program_id == program_id)
            tx.record(MessagesPublished(program_id, program.group_id, ids))
        return cancelled

    async def _program_for(self, tx: UnitOfWork, group_id: int) -> MessagingProgram:
        group = await store.select_group_for_update(tx.session, group_id)
        found = await store.select_messaging_programs(tx.session, group_id)
        if found:
            return found[0]
        program = await store.insert_messaging_program(
            tx.session,
            group_id,
            group.description,
            DEFAULT_LOCALE,
            DEFAULT_PRIMACY,
            self.clock.now_int(),
            self.pen,
        )
        tx.record(MessagingProgramChanged(program.id, group_id))
        return program

    def _validate(self, document: bytes) -> None:
        error = schema_error(self.sep2.schemas.validator, etree.fromstring(document))
        if error is not None:
            raise InvalidValues(f"TextMessage would not be valid 2030.5: {error}")

    # ---- the utility's side (admin API): each its own unit of work ----------------------------
    async def post(
        self, group_id: int, drafts: Sequence[MessageDraft], *, source: str | None = None
    ) -> list[TextMessage]:
        async with self.changes.unit_of_work() as tx:
            return await self.publish(tx, group_id, drafts, source=source)

    async def cancel(self, group_id: int, message_id: int) -> TextMessage:
        """Cancel one message of a group (one already over or cancelled is answered as is)."""
        async with self.changes.unit_of_work() as tx:
            message = await store.select_text_message(tx.session, message_id)
            program = (
                None
                if message is None
                else await store.select_messaging_program(tx.session, message.program_id)
            )
            if message is None or program is None or program.group_id != group_id:
                raise NotFound(f"no TextMessage {message_id} in group {group_id}")
            cancelled = await self._cancel(tx, [message_id])
            return cancelled[0] if cancelled else message

    async def cancel_messages_of(self, source: str) -> list[TextMessage]:
        async with self.changes.unit_of_work() as tx:
            return await self.cancel_source(tx, source)

    async def set_program(
        self, group_id: int, locale: str | None, primacy: int | None
    ) -> MessagingProgram:
        """Make the group's MessagingProgram, or change its locale or primacy."""
        if primacy is not None and not 0 <= primacy <= 255:
            raise BadRequest("primacy is 0..255 (lower is more important)")
        if locale is not None and not 0 < len(locale) <= 42:
            raise BadRequest("locale is 1..42 characters (e.g. en-US)")
        async with self.changes.unit_of_work() as tx:
            program = await self._program_for(tx, group_id)
            if locale is None and primacy is None:
                return program
            updated = await store.update_messaging_program(tx.session, program.id, locale, primacy)
            tx.record(MessagingProgramChanged(program.id, group_id))
            return updated

    async def history(self, group_id: int) -> tuple[MessagingProgram | None, list[TextMessage]]:
        """Every message the group ever had (the admin API's view: over ones too)."""
        if group_id not in await self.programs.groups():
            raise NotFound(f"no group {group_id}")
        programs = await self.programs.messaging_programs_of(group_id)
        if not programs:
            return None, []
        state = await self.state(programs[0].id)
        return state.program, list(state.messages)
