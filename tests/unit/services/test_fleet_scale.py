"""What one control write costs at fleet scale, counted in queries (timing is bench/'s):
an aggregator with thousands of devices in hundreds of groups, on SQLite. A control write, the
refill of its program's state and an aggregator's visible groups cost the same number of
queries for a fleet of 20 devices as for one of 2,000, and never read every program."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.devices import Principal, PrincipalKind
from csip.pki.identity import sfdi_from_lfdi
from csip.sep2 import schema
from csip.services.admin import AdminService, PreRegistration
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.programs import ControlSpec, ProgramService
from csip.services.sep2 import Sep2Service
from csip.store import Store
from csip.store import der as der_store

SPEC = ControlSpec(start=2_000_000_000, duration=60, base={"opModFixedW": 50})


@dataclass
class Costs:
    write: int
    refill: int
    visible: int
    unscoped_program_reads: int


async def _costs(tmp_path: Path, devices: int, groups: int, monkeypatch: Any) -> Costs:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / f'fleet-{devices}.db'}")
    await store.migrate()
    settings = Settings(data_dir=tmp_path)
    sep2 = Sep2Service(
        store, settings, Clock(), schema.load(settings.profile), Changes(store, LocalBus(), Clock())
    )
    admin, programs = AdminService(sep2), ProgramService(sep2)
    agg = await admin.create_aggregator("agg")
    lfdis = [secrets.token_hex(20).upper() for _ in range(devices)]
    for i in range(0, devices, 1000):
        batch = lfdis[i : i + 1000]
        await admin.preregister(
            [PreRegistration(x, sfdi_from_lfdi(x), aggregator="agg") for x in batch]
        )
    pids = []
    for g in range(groups):
        group = await programs.create_group(f"feeder {g}", None, None)
        pids.append((await programs.create_program(group.id, "p", 1)).id)
        await programs.add_members(group.id, lfdis[g::groups])
    everyone = await programs.create_group("everyone", None, None)
    await programs.add_members(everyone.id, lfdis)
    principal = Principal("AA" * 20, 1, PrincipalKind.AGGREGATOR, aggregator_id=agg.id)
    pid = pids[-1]
    await programs.state(pid)
    assert len(await programs.visible_groups(principal)) == groups + 1

    unscoped = 0
    real = der_store.select_programs

    async def select_programs(s: Any, group_id: int | None = None) -> Any:
        nonlocal unscoped
        unscoped += group_id is None
        return await real(s, group_id)

    monkeypatch.setattr(der_store, "select_programs", select_programs)
    count = 0

    def counted(*_args: Any) -> None:
        nonlocal count
        count += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    await programs.create_controls(pid, [SPEC])
    write, count = count, 0
    state = await programs.state(pid)
    assert len(state.controls) == 1
    refill, count = count, 0
    programs.cache.invalidate([f"visible:{principal.scope}"])
    assert len(await programs.visible_groups(principal)) == groups + 1
    visible = count
    monkeypatch.undo()
    await store.close()
    return Costs(write, refill, visible, unscoped)


async def test_a_control_write_costs_the_same_queries_at_any_fleet_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = await _costs(tmp_path, 20, 2, monkeypatch)
    large = await _costs(tmp_path, 2_000, 200, monkeypatch)
    assert large == small
    assert large.unscoped_program_reads == 0  # never every program
    assert large.write <= 10 and large.refill <= 8 and large.visible <= 3
