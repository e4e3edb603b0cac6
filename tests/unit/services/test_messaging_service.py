"""MessagingService on SQLite, no sockets: the program engine's publish/cancel_source inside its
own unit of work, the admin API's wrappers, and render once for the device-facing lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import event

from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.devices import Principal, PrincipalKind
from csip.domain.dispatch import MessageDraft
from csip.domain.paging import Page
from csip.errors import InvalidValues, NotFound
from csip.pki.identity import sfdi_from_lfdi
from csip.sep2 import schema
from csip.services.admin import AdminService, PreRegistration
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.messaging import MessagingService
from csip.services.programs import ProgramService
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.store import messaging as message_store

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
T0 = 2_000_000_000
SEP = "{urn:ieee:std:2030.5:ns}"


@dataclass
class World:
    messaging: MessagingService
    programs: ProgramService
    clock: Clock
    seen: list[list[str]]
    device: Principal
    group_id: int

    async def listing(self, program_id: int, active: bool = False) -> etree._Element:
        body = await self.messaging.message_list(self.device, program_id, Page(0, None, 10), active)
        return etree.fromstring(body)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    settings = Settings(data_dir=tmp_path)
    bus = LocalBus()
    seen: list[list[str]] = []
    bus.subscribe(seen.append)
    clock = Clock()
    clock.set(T0)
    sep2 = Sep2Service(
        store, settings, clock, schema.load(settings.profile), Changes(store, bus, clock)
    )
    await AdminService(sep2).preregister([PreRegistration(LFDI, sfdi_from_lfdi(LFDI))])
    programs = ProgramService(sep2)
    group = await programs.create_group("feeder 7", "feeder", None)
    await programs.set_member(group.id, LFDI, True)
    seen.clear()
    device = Principal(LFDI, sfdi_from_lfdi(LFDI), PrincipalKind.DEVICE)
    yield World(MessagingService(programs), programs, clock, seen, device, group.id)
    await store.close()


def draft(text: str = "Peak event 5-8 pm", start: int = T0 + 60, **kw: Any) -> MessageDraft:
    values: dict[str, Any] = {"duration": 600, "priority": 2, "originator": "utility"}
    values.update(kw)
    return MessageDraft(start=start, text=text, **values)


def texts(root: etree._Element) -> list[tuple[str | None, str | None]]:
    return [
        (m.findtext(f"{SEP}textMessage"), m.findtext(f"{SEP}EventStatus/{SEP}currentStatus"))
        for m in root.findall(f"{SEP}TextMessage")
    ]


async def test_publish_in_the_callers_unit_makes_one_program_per_group(world: World) -> None:
    svc = world.messaging
    async with svc.changes.unit_of_work() as tx:
        first = await svc.publish(tx, world.group_id, [draft("one"), draft("two", T0 + 120)])
    async with svc.changes.unit_of_work() as tx:
        (third,) = await svc.publish(tx, world.group_id, [draft("three")], source="event:e1")
    assert {m.program_id for m in [*first, third]} == {first[0].program_id}
    assert third.source == "event:e1" and int(third.mrid, 16) & 0xFFFFFFFF == 0  # PEN 0
    (program,) = await world.programs.messaging_programs_of(world.group_id)
    assert (program.locale, program.primacy, program.description) == ("en-US", 1, "feeder 7")
    # the first unit made the program and its messages; the second only messages
    assert f"msg-group:{world.group_id}" in world.seen[0]
    assert f"msg-group:{world.group_id}" not in world.seen[1]
    assert f"msg:{program.id}" in world.seen[1]
    # TextMessageList order: start ascending, the newest first at one start
    assert [t for t, _ in texts(await world.listing(program.id))] == ["three", "one", "two"]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"priority": 4}, "priority"),
        ({"duration": 0}, "duration"),
        ({"text": "  "}, "empty"),
        ({"text": "bell \x07"}, "control characters"),
        ({"originator": "a utility with a long name"}, "String20"),
    ],
)
async def test_a_bad_draft_stores_nothing_not_even_the_program(
    world: World, bad: dict[str, Any], says: str
) -> None:
    values: dict[str, Any] = {"text": "fine", "start": T0, **bad}
    with pytest.raises(InvalidValues, match=says):
        await world.messaging.post(world.group_id, [draft("ok"), draft(**values)])
    assert await world.programs.messaging.programs() == []
    assert world.seen == []  # nothing committed, nothing invalidated


async def test_what_the_engine_rolls_back_leaves_no_message(world: World) -> None:
    svc = world.messaging

    class EngineFailed(Exception):
        pass

    with pytest.raises(EngineFailed):
        async with svc.changes.unit_of_work() as tx:
            await svc.publish(tx, world.group_id, [draft()], source="event:e1")
            raise EngineFailed  # e.g. a payload that cannot be converted, found later
    assert await world.programs.messaging.programs() == []
    with pytest.raises(NotFound):
        await svc.post(9999, [draft()])


async def test_cancel_source_cancels_what_is_not_over_of_that_source_only(world: World) -> None:
    svc = world.messaging
    past = draft("over", T0 - 700)  # ended at T0 - 100
    own = await svc.post(world.group_id, [past, draft("alert")], source="event:e1")
    (other,) = await svc.post(world.group_id, [draft("other")], source="event:e2")
    world.clock.set(T0 + 100)
    async with svc.changes.unit_of_work() as tx:
        cancelled = await svc.cancel_source(tx, "event:e1")
    assert [m.text for m in cancelled] == ["alert"] and cancelled[0].cancelled_at == T0 + 100
    async with svc.changes.unit_of_work() as tx:
        assert await svc.cancel_source(tx, "event:e1") == []  # already cancelled: no change
        stored = await message_store.select_text_messages(tx.session, [other.program_id])
    by_text = {m.text: m for m in stored}
    assert by_text["over"].cancelled_at is None and by_text["other"].cancelled_at is None
    listing = texts(await world.listing(own[1].program_id))
    assert ("alert", "2") in listing and ("other", "1") in listing


async def test_lists_render_once_and_follow_the_clock(world: World) -> None:
    svc = world.messaging
    (message,) = await svc.post(world.group_id, [draft("soon", T0 + 60)])
    pid = message.program_id
    assert texts(await world.listing(pid)) == [("soon", "0")]
    assert (await world.listing(pid, active=True)).get("all") == "0"

    # a second poll with nothing changed: no rendering, no query
    engine = svc.sep2.store.engine.sync_engine
    queries: list[str] = []

    def count(*args: Any) -> None:
        queries.append(str(args[2]))

    renders = svc.cache.stats.renders
    event.listen(engine, "before_cursor_execute", count)
    try:
        await world.listing(pid)
        await svc.program(world.device, pid)  # filled once ...
        renders_after_fill = svc.cache.stats.renders
        queries.clear()
        await world.listing(pid)
        await svc.program(world.device, pid)  # ... and served from memory
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert queries == [] and svc.cache.stats.renders == renders_after_fill == renders + 1

    # the start passes with no write: the next poll says active, and acttxt holds it
    world.clock.set(T0 + 60)
    assert texts(await world.listing(pid)) == [("soon", "1")]
    assert texts(await world.listing(pid, active=True)) == [("soon", "1")]
    program = etree.fromstring(await svc.program(world.device, pid))
    assert program.find(f"{SEP}ActiveTextMessageListLink").get("all") == "1"  # type: ignore[union-attr]
    # over: it leaves both lists; its own href still answers (history)
    world.clock.set(T0 + 660)
    assert (await world.listing(pid)).get("all") == "0"
    one = etree.fromstring(await svc.message(world.device, pid, message.id))
    assert one.findtext(f"{SEP}textMessage") == "soon"


async def test_another_client_finds_nothing(world: World) -> None:
    (message,) = await world.messaging.post(world.group_id, [draft()])
    stranger_lfdi = "AB" * 20
    stranger = Principal(stranger_lfdi, sfdi_from_lfdi(stranger_lfdi), PrincipalKind.DEVICE)
    for read in (
        world.messaging.program(stranger, message.program_id),
        world.messaging.message_list(stranger, message.program_id, Page(0, None, 1)),
        world.messaging.message(stranger, message.program_id, message.id),
        world.messaging.program_list(stranger, world.group_id, Page(0, None, 1)),
    ):
        with pytest.raises(NotFound):
            await read


async def test_the_utility_sets_locale_and_primacy_and_devices_see_them(world: World) -> None:
    svc = world.messaging
    made = await svc.set_program(world.group_id, None, None)  # made, with the defaults
    assert (made.locale, made.primacy) == ("en-US", 1)
    (message,) = await svc.post(world.group_id, [draft()])
    assert message.program_id == made.id
    page = Page(0, None, 5)
    before = etree.fromstring(await svc.program_list(world.device, world.group_id, page))
    assert before.findtext(f"{SEP}MessagingProgram/{SEP}locale") == "en-US"
    world.seen.clear()
    changed = await svc.set_program(world.group_id, "fr-CA", 5)
    assert (changed.id, changed.locale, changed.primacy) == (made.id, "fr-CA", 5)
    assert f"msg-group:{world.group_id}" in world.seen[0]
    after = etree.fromstring(await svc.program_list(world.device, world.group_id, page))
    assert after.findtext(f"{SEP}MessagingProgram/{SEP}locale") == "fr-CA"
    assert after.findtext(f"{SEP}MessagingProgram/{SEP}primacy") == "5"


async def test_a_lab_reset_takes_the_messages_with_the_groups(world: World) -> None:
    await world.messaging.post(world.group_id, [draft()])
    await world.programs.reset()
    assert await world.programs.messaging.programs() == []
    group = await world.programs.create_group("again", None, None)
    assert await world.messaging.history(group.id) == (None, [])  # nothing inherited
