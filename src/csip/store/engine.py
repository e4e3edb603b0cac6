"""Store functions of the program engine (tables in tables_engine.py).

Everything here runs inside the caller's unit of work: an event and the controls it produces
for every enrolled group commit together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, delete, select

from csip.domain.der import Control, Group
from csip.domain.programs import DEFAULT_SEASONS, Enrollment, ProgramTerms
from csip.errors import Conflict, NotFound
from csip.store.der import _CONTROLS, _control_of, _group, _live_group
from csip.store.tables_der import DerGroupRow, DerProgramRow
from csip.store.tables_engine import (
    EngineControlRow,
    EngineEnrollmentRow,
    EngineForcedRow,
    EngineMappingRow,
    EngineProgramRow,
)


@dataclass(frozen=True, slots=True)
class ProgramChoices:
    """The utility's per-program choices (engine_program), defaults when never set."""

    program_id: str
    primacy: int
    simple_levels: Mapping[int, Mapping[str, Any]]
    notice_before: str | None
    notice_after: str | None
    notice_lead: int
    originator: str
    terms: ProgramTerms = field(default_factory=ProgramTerms)
    #: GROUP: a group's DERProgram carries the event as is; PER_DEVICE: its power and
    #: charge payloads are shared among the group's batteries (services/dispatch.py).
    dispatch: str = "group"


@dataclass(frozen=True, slots=True)
class EngineControl:
    """A DERControl an event produced for a group, with the intervals it carries."""

    group_id: int
    control: Control
    interval_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GroupMapping:
    group_id: int
    planned_at: int
    unmapped: tuple[tuple[str, str], ...]
    messages: int


# ---- group target names -------------------------------------------------------------------
async def update_group_target(s: AsyncSession, group_id: int, target: str | None) -> Group:
    row = await _live_group(s, group_id)
    if target is not None:
        taken = await s.scalar(
            select(DerGroupRow.id).where(
                col(DerGroupRow.target) == target, col(DerGroupRow.id) != group_id
            )
        )
        if taken is not None:
            raise Conflict(f"target {target!r} already names group {taken}")
    row.target = target
    await s.flush()
    return _group(row)


# ---- program choices -------------------------------------------------------------------------
def _choices(row: EngineProgramRow) -> ProgramChoices:
    levels = {int(k): v for k, v in json.loads(row.simple_levels).items()}
    return ProgramChoices(
        row.program_id,
        row.primacy,
        levels,
        row.notice_before,
        row.notice_after,
        row.notice_lead,
        row.originator,
        _terms(json.loads(row.terms or "{}")),
        row.dispatch or "group",
    )


def _terms(data: Mapping[str, Any]) -> ProgramTerms:
    seasons = data.get("seasons")
    return ProgramTerms(
        data.get("reserve_floor_percent"),
        data.get("max_event_seconds"),
        data.get("max_events_per_month"),
        data.get("max_events_per_season"),
        data.get("min_notice_seconds"),
        tuple((int(a), int(b)) for a, b in seasons) if seasons else DEFAULT_SEASONS,
    )


def terms_json(terms: ProgramTerms) -> dict[str, Any]:
    return {
        "reserve_floor_percent": terms.reserve_floor_percent,
        "max_event_seconds": terms.max_event_seconds,
        "max_events_per_month": terms.max_events_per_month,
        "max_events_per_season": terms.max_events_per_season,
        "min_notice_seconds": terms.min_notice_seconds,
        "seasons": [list(s) for s in terms.seasons],
    }


async def select_choices(s: AsyncSession, program_id: str) -> ProgramChoices | None:
    row = await s.get(EngineProgramRow, program_id)
    return _choices(row) if row is not None else None


async def upsert_choices(s: AsyncSession, choices: ProgramChoices) -> ProgramChoices:
    row = await s.get(EngineProgramRow, choices.program_id)
    if row is None:
        row = EngineProgramRow(
            program_id=choices.program_id, primacy=choices.primacy, simple_levels="{}"
        )
        s.add(row)
    row.primacy = choices.primacy
    row.simple_levels = json.dumps({str(k): dict(v) for k, v in choices.simple_levels.items()})
    row.notice_before = choices.notice_before
    row.notice_after = choices.notice_after
    row.notice_lead = choices.notice_lead
    row.originator = choices.originator
    row.terms = json.dumps(terms_json(choices.terms))
    row.dispatch = choices.dispatch
    await s.flush()
    return _choices(row)


# ---- enrollments -----------------------------------------------------------------------------
async def insert_enrollment(
    s: AsyncSession, program_id: str, group_id: int, der_program_id: int, now: int
) -> None:
    taken = await s.scalar(
        select(EngineEnrollmentRow.id).where(
            col(EngineEnrollmentRow.program_id) == program_id,
            col(EngineEnrollmentRow.group_id) == group_id,
        )
    )
    if taken is not None:
        raise Conflict(f"group {group_id} is already enrolled in program {program_id!r}")
    s.add(
        EngineEnrollmentRow(
            program_id=program_id,
            group_id=group_id,
            der_program_id=der_program_id,
            created_at=now,
        )
    )
    await s.flush()


async def select_enrollments(s: AsyncSession, program_id: str) -> list[Enrollment]:
    """The live enrollments of a program (a deleted group or DERProgram is no longer one)."""
    query = (
        select(EngineEnrollmentRow.group_id, DerGroupRow.target, EngineEnrollmentRow.der_program_id)
        .join(DerGroupRow, col(DerGroupRow.id) == col(EngineEnrollmentRow.group_id))
        .join(DerProgramRow, col(DerProgramRow.id) == col(EngineEnrollmentRow.der_program_id))
        .where(
            col(EngineEnrollmentRow.program_id) == program_id,
            col(DerGroupRow.deleted_at).is_(None),
            col(DerProgramRow.deleted_at).is_(None),
        )
        .order_by(col(EngineEnrollmentRow.group_id))
    )
    return [Enrollment(g, t or "", p) for g, t, p in (await s.execute(query)).all()]


async def delete_enrollment(s: AsyncSession, program_id: str, group_id: int) -> int:
    """Remove a group's enrollment; returns the DERProgram it had (for the caller to delete)."""
    row = await s.scalar(
        select(EngineEnrollmentRow).where(
            col(EngineEnrollmentRow.program_id) == program_id,
            col(EngineEnrollmentRow.group_id) == group_id,
        )
    )
    if row is None:
        raise NotFound(f"group {group_id} is not enrolled in program {program_id!r}")
    der_program_id = row.der_program_id
    await s.delete(row)
    await s.flush()
    return der_program_id


async def count_enrollments(s: AsyncSession) -> dict[str, int]:
    query = select(EngineEnrollmentRow.program_id, func.count()).group_by(
        col(EngineEnrollmentRow.program_id)
    )
    return {p: int(n) for p, n in (await s.execute(query)).all()}


# ---- what an event produced -----------------------------------------------------------------
async def insert_engine_controls(
    s: AsyncSession, event_id: str, links: Iterable[tuple[int, int, Sequence[int]]]
) -> None:
    """links: (group id, control id, interval ids)."""
    params = [
        {
            "control_id": control_id,
            "event_id": event_id,
            "group_id": group_id,
            "interval_ids": json.dumps(list(intervals)),
        }
        for group_id, control_id, intervals in links
    ]
    if params:  # one executemany, not 12,000 ORM objects
        await s.execute(insert(EngineControlRow.__table__), params)  # type: ignore[attr-defined]


async def select_engine_controls(s: AsyncSession, event_id: str) -> list[EngineControl]:
    links = EngineControlRow.__table__  # type: ignore[attr-defined]
    query = (
        select(_CONTROLS, links.c.group_id.label("link_group"), links.c.interval_ids)
        .join(links, links.c.control_id == _CONTROLS.c.id)
        .where(links.c.event_id == event_id)
        .order_by(links.c.group_id, _CONTROLS.c.id)
    )
    return [
        EngineControl(row.link_group, _control_of(row), tuple(json.loads(row.interval_ids)))
        for row in await s.execute(query)
    ]


async def upsert_mappings(s: AsyncSession, event_id: str, mappings: Sequence[GroupMapping]) -> None:
    await s.execute(delete(EngineMappingRow).where(col(EngineMappingRow.event_id) == event_id))
    await _insert_mappings(s, event_id, mappings)


async def select_mappings(s: AsyncSession, event_id: str) -> list[GroupMapping]:
    rows = await s.scalars(
        select(EngineMappingRow)
        .where(col(EngineMappingRow.event_id) == event_id)
        .order_by(col(EngineMappingRow.group_id))
    )
    return [
        GroupMapping(
            r.group_id,
            r.planned_at,
            tuple((str(a), str(b)) for a, b in json.loads(r.unmapped)),
            r.messages,
        )
        for r in rows
    ]


async def add_mappings(s: AsyncSession, event_id: str, mappings: Sequence[GroupMapping]) -> None:
    """Replace the mapping rows of just these groups (a group enrolled after the event)."""
    groups = [m.group_id for m in mappings]
    if not groups:
        return
    await s.execute(
        delete(EngineMappingRow).where(
            col(EngineMappingRow.event_id) == event_id, col(EngineMappingRow.group_id).in_(groups)
        )
    )
    await _insert_mappings(s, event_id, mappings)


async def _insert_mappings(
    s: AsyncSession, event_id: str, mappings: Sequence[GroupMapping]
) -> None:
    params = [
        {
            "event_id": event_id,
            "group_id": m.group_id,
            "planned_at": m.planned_at,
            "unmapped": json.dumps([list(u) for u in m.unmapped]),
            "messages": m.messages,
        }
        for m in mappings
    ]
    if params:
        await s.execute(insert(EngineMappingRow.__table__), params)  # type: ignore[attr-defined]


async def insert_forced(s: AsyncSession, event_id: str, now: int, broken: Sequence[str]) -> None:
    s.add(EngineForcedRow(event_id=event_id, forced_at=now, broken=json.dumps(list(broken))))
    await s.flush()


async def select_forced(s: AsyncSession, event_id: str) -> list[dict[str, Any]]:
    rows = await s.scalars(
        select(EngineForcedRow)
        .where(col(EngineForcedRow.event_id) == event_id)
        .order_by(col(EngineForcedRow.id))
    )
    return [{"forced_at": r.forced_at, "broken": json.loads(r.broken)} for r in rows]
