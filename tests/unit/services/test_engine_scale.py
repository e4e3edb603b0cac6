"""The program engine's write and the reads after it cost the same number of queries for 2
enrolled groups as for 40 (issue 10, Figures: one event reaching 1,000 groups must be one
bulk write, and the 1,000 DERControlLists polled after it load together, not one by one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from csip.app import App, build
from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.der import Status
from csip.errors import NotFound
from csip.openadr.rules import EVENT, PROGRAM, Principal
from csip.services import changes as tag

from support import Pki, built_app

T0 = 2_000_000_000
BL = Principal(
    "bl-1", "bl", frozenset({"read_all", "write_programs", "write_events", "write_reports"})
)


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0) as built:
        yield built


def _body(program_id: str, base: float) -> bytes:
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(T0 + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "programID": program_id,
            "intervalPeriod": {"start": start, "duration": "PT1H"},
            "intervals": [
                {"id": i, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [base + i]}]}
                for i in range(3)
            ],
        }
    ).encode()


async def _enrolled(app: App, groups: int) -> tuple[str, list[int]]:
    body = {
        "programName": "p",
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT",
                "units": "KW",
            }
        ],
    }
    program_id = str(json.loads(await app.vtn.create(BL, PROGRAM, json.dumps(body).encode()))["id"])
    der_programs = []
    for g in range(groups):
        group = await app.programs.create_group(f"g{g}", None, None)
        der_programs.append((await app.engine.enroll(program_id, group.id)).der_program_id)
    return program_id, der_programs


class Counter:
    def __init__(self, app: App) -> None:
        self.count = 0
        event.listen(app.store.engine.sync_engine, "before_cursor_execute", self.counted)

    def counted(self, *_args: Any) -> None:
        self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


async def _costs(app: App, groups: int) -> tuple[list[int], list[Any]]:
    program_id, der_programs = await _enrolled(app, groups)
    await asyncio.gather(*(app.programs.state(p) for p in der_programs))  # devices polled
    counter = Counter(app)
    created = json.loads(await app.vtn.create(BL, EVENT, _body(program_id, 5.0)))
    costs = [counter.take()]
    await app.vtn.update(BL, EVENT, created["id"], _body(program_id, 2.0))
    costs.append(counter.take())
    states = await asyncio.gather(*(app.programs.state(p) for p in der_programs))
    costs.append(counter.take())
    await app.vtn.delete(BL, EVENT, created["id"])
    costs.append(counter.take())
    return costs, list(states)


async def test_an_event_costs_the_same_queries_for_2_groups_as_for_40(
    app: App, tmp_path: Path, pki: Pki
) -> None:
    small, _ = await _costs(app, 2)
    settings = Settings(
        data_dir=tmp_path / "large", certs_dir=pki.directory, sep2_port=18443
    ).validate()
    clock = Clock()
    clock.set(T0)
    large_app = build(settings, clock)
    await large_app.store.migrate()
    try:
        large, states = await _costs(large_app, 40)
    finally:
        await large_app.store.close()
    assert large == small  # create, update, the 40 states read together, delete
    for state in states:  # and what they read is each program's own schedule
        statuses = sorted(
            (c.start, dict(c.base)["opModTargetW"]["value"], state.statuses[c.id].current)
            for c in state.controls
        )
        assert [s for s in statuses if s[2] is Status.SCHEDULED] == [
            (T0 + 3600, 2000, Status.SCHEDULED),
            (T0 + 7200, 3000, Status.SCHEDULED),
            (T0 + 10800, 4000, Status.SCHEDULED),
        ]
        assert sum(1 for s in statuses if s[2] is Status.SUPERSEDED) == 3
        assert {c.program_id for c in state.controls} == {state.program.id}


async def test_misses_arriving_together_load_together_and_an_unknown_program_fails_alone(
    app: App,
) -> None:
    _, der_programs = await _enrolled(app, 5)
    await asyncio.gather(*(app.programs.state(p) for p in der_programs))
    app.programs.cache.invalidate([tag.program(p) for p in der_programs])  # as a write does
    counter = Counter(app)
    found = await asyncio.gather(
        *(app.programs.state(p) for p in der_programs),
        app.programs.state(999_999),
        return_exceptions=True,
    )
    assert counter.take() <= 4  # programs, controls, curves, default controls: once for all
    assert isinstance(found[-1], NotFound)
    assert [s.program.id for s in found[:-1]] == der_programs  # type: ignore[union-attr]
    # cached now: a second read queries nothing
    await asyncio.gather(*(app.programs.state(p) for p in der_programs))
    assert counter.take() == 0
