"""services/boundaries.py on SQLite, no sockets: 1,000 programs with controls cost one read
to learn their moments, nothing while none passes, one unit of work when they pass together,
and a write re-reads only the program it touched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from csip.domain.changes import ControlsPublished
from csip.domain.clock import Clock
from csip.domain.der import Control, next_notice
from csip.services.boundaries import BoundaryNotices
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.store import Store
from csip.store import der as der_store

PROGRAMS = 1000


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Store, Changes, Clock, int]]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    clock = Clock()
    changes = Changes(store, LocalBus(), clock)
    now = clock.now_int()
    start = now + 100
    async with store.transaction() as s:
        group = await der_store.insert_group(s, "feeder", None, None, now, 0)
        for index in range(PROGRAMS):
            program = await der_store.insert_program(s, group.id, f"p{index}", 1, now, 0)
            event_ = Control(0, "", program.id, "", now, start, 600, {"opModMaxLimW": 1})
            await der_store.insert_controls(s, [event_], 0)
    yield store, changes, clock, start
    await store.close()


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)


async def test_thousand_programs_one_read_then_nothing_until_a_moment_passes(
    world: tuple[Store, Changes, Clock, int],
) -> None:
    store, changes, clock, start = world
    notices = BoundaryNotices(store, changes, clock, changes.bus, max_sleep=3600)
    await notices.resume()
    with statements(store) as seen:
        await notices.run_once()
    assert len([s for s in seen if "der_control" in s]) == 1  # every program, one query
    assert len(notices.pending) == PROGRAMS
    assert next_notice(notices.pending) == start  # sleeps until the start, not a poll

    with statements(store) as seen:
        await notices.run_once()  # woken with nothing passed: reads nothing
    assert seen == []

    clock.advance(100)  # every start passes at once: one unit of work tells them all
    with statements(store) as seen:
        await notices.run_once()
    assert notices.claimed == PROGRAMS
    assert sum(1 for s in seen if s.startswith("INSERT INTO der_boundary_notice")) == 2  # 500s
    assert not any(s.startswith("SELECT") and "der_control" in s for s in seen)
    assert {moments[0] for moments in notices.pending.values()} == {start + 600}

    # a write to one program re-reads that program only, and may bring its moment earlier
    program = min(notices.pending)
    now = clock.now_int()
    async with changes.unit_of_work() as tx:
        (created,) = await der_store.insert_controls(
            tx.session, [Control(0, "", program, "", now, now + 5, 10, {"opModMaxLimW": 2})], 0
        )
        tx.record(ControlsPublished(program, (created.id,)))
    with statements(store) as seen:
        await notices.run_once()
    reads = [s for s in seen if "der_control" in s]
    assert len(reads) == 1 and "IN (" in reads[0]
    assert notices.pending[program] == [now + 5, now + 15, start + 600]
    assert notices._sleep() <= 5

    # the same moments told again (another worker, a restart): the claims refuse them
    again = BoundaryNotices(store, changes, clock, LocalBus())
    clock.advance(-100)
    await again.resume()
    clock.advance(100)
    await again.run_once()
    assert again.claimed == 0
