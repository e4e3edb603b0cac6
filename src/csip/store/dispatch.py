"""Store functions of per-device dispatch (tables in tables_dispatch.py). Everything runs in
the caller's unit of work: a plan, the device controls it publishes and their links commit
together with the event (or the re-plan) or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from csip.domain.der import Control
from csip.store.der import _CONTROLS, _control_of
from csip.store.tables_dispatch import DispatchControlRow, DispatchPlanRow


@dataclass(frozen=True, slots=True)
class StoredPlan:
    event_id: str
    group_id: int
    planned_at: int
    ends_at: int
    plan: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceControl:
    """A DERControl that carries one device's setpoints of an event."""

    group_id: int
    device_id: int
    control: Control
    interval_ids: tuple[int, ...]


def _plan(row: DispatchPlanRow) -> StoredPlan:
    return StoredPlan(row.event_id, row.group_id, row.planned_at, row.ends_at, json.loads(row.plan))


async def select_plans(
    s: AsyncSession, event_id: str, *, claim: bool = False
) -> list[StoredPlan] | None:
    """The event's plans, one per group. `claim`: lock them for a re-plan; None when another
    worker holds them (PostgreSQL, SKIP LOCKED; SQLite's single writer is the claim there)."""
    query = (
        select(DispatchPlanRow)
        .where(col(DispatchPlanRow.event_id) == event_id)
        .order_by(col(DispatchPlanRow.group_id))
    )
    postgres = s.get_bind().dialect.name == "postgresql"
    if claim and postgres:
        total = len((await s.scalars(query)).all())
        rows = list((await s.scalars(query.with_for_update(skip_locked=True))).all())
        if len(rows) < total:
            return None
        return [_plan(r) for r in rows]
    return [_plan(r) for r in await s.scalars(query)]


async def upsert_plan(s: AsyncSession, plan: StoredPlan) -> None:
    row = await s.get(DispatchPlanRow, (plan.event_id, plan.group_id))
    if row is None:
        row = DispatchPlanRow(event_id=plan.event_id, group_id=plan.group_id, planned_at=0,
                              ends_at=0, plan="{}")  # fmt: skip
        s.add(row)
    row.planned_at = plan.planned_at
    row.ends_at = plan.ends_at
    row.plan = json.dumps(plan.plan, sort_keys=True)
    await s.flush()


async def delete_plans(s: AsyncSession, event_id: str, group_ids: Iterable[int]) -> None:
    groups = list(group_ids)
    if groups:
        await s.execute(
            delete(DispatchPlanRow).where(
                col(DispatchPlanRow.event_id) == event_id,
                col(DispatchPlanRow.group_id).in_(groups),
            )
        )


async def select_events_to_watch(s: AsyncSession, now: int) -> list[str]:
    """Events with a per-device plan that is not over."""
    query = (
        select(DispatchPlanRow.event_id)
        .where(col(DispatchPlanRow.ends_at) > now)
        .distinct()
        .order_by(col(DispatchPlanRow.event_id))
    )
    return [str(e) for e in await s.scalars(query)]


async def insert_device_controls(
    s: AsyncSession, event_id: str, links: Iterable[tuple[int, int, int, Sequence[int]]]
) -> None:
    """links: (group id, device id, control id, interval ids)."""
    s.add_all(
        DispatchControlRow(
            control_id=control_id,
            event_id=event_id,
            group_id=group_id,
            device_id=device_id,
            interval_ids=json.dumps(list(intervals)),
        )
        for group_id, device_id, control_id, intervals in links
    )
    await s.flush()


async def select_device_controls(s: AsyncSession, event_id: str) -> list[DeviceControl]:
    """Core rows, not ORM objects: a bulk cancellation earlier in the same transaction must
    not be hidden behind a stale identity map."""
    links = DispatchControlRow.__table__  # type: ignore[attr-defined]
    query = (
        select(
            _CONTROLS,
            links.c.group_id.label("link_group"),
            links.c.device_id.label("link_device"),
            links.c.interval_ids,
        )
        .join(links, links.c.control_id == _CONTROLS.c.id)
        .where(links.c.event_id == event_id)
        .order_by(links.c.device_id, _CONTROLS.c.id)
    )
    return [
        DeviceControl(
            row.link_group, row.link_device, _control_of(row), tuple(json.loads(row.interval_ids))
        )
        for row in await s.execute(query)
    ]
