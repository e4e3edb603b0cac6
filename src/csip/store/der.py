"""Persistence of the DER function set: functions that take the session of the caller's unit
of work (store.uow) and record nothing about what a change means (services/changes.py does).
Controls are never deleted (only cancelled); programs and groups are marked deleted (their
rows stay as history) and removed only by a lab reset.

`DerStore` keeps one-transaction read methods for the read paths that are not part of a
unit of work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, case, func, insert, or_, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import col, delete, select

from csip.domain.der import Control, Curve, DefaultControl, Group, Program
from csip.domain.devices import mint_mrid
from csip.errors import Conflict, NotFound
from csip.store.store import Store
from csip.store.tables import EndDeviceRow
from csip.store.tables_der import (
    DerBoundaryNoticeRow,
    DerControlRow,
    DerCurveRow,
    DerDefaultControlRow,
    DerGroupMemberRow,
    DerGroupRow,
    DerProgramRow,
    DerResponseRow,
)
from csip.store.tables_engine import (
    EngineControlRow,
    EngineEnrollmentRow,
    EngineForcedRow,
    EngineMappingRow,
    EngineProgramRow,
)

#: High bits of minted mRIDs, one per kind of object, so ids never collide across kinds.
KIND_GROUP, KIND_PROGRAM, KIND_CONTROL, KIND_DEFAULT, KIND_CURVE = 1, 2, 3, 4, 5
KIND_READING_SET = 6  # the metering read side (services/metering.py)
KIND_MESSAGING_PROGRAM, KIND_TEXT_MESSAGE = 7, 8  # the Messaging function set (store/messaging.py)


def _mrid(kind: int, ident: int, pen: int, version: int = 0) -> str:
    return mint_mrid((kind << 80) | (version << 48) | ident, pen)


def _group(row: DerGroupRow) -> Group:
    assert row.id is not None
    return Group(
        row.id, row.mrid, row.description, row.level, row.parent_id, row.created_at, row.target
    )


def _program(row: Any) -> Program:
    """From an ORM DerProgramRow or a core row of der_program."""
    assert row.id is not None
    return Program(
        row.id,
        row.mrid,
        row.group_id,
        row.description,
        row.primacy,
        row.version,
        row.created_at,
        row.deleted_at,
    )


def _curve(row: Any) -> Curve:
    """From an ORM DerCurveRow or a core row of der_curve."""
    assert row.id is not None
    points = tuple((int(x), int(y)) for x, y in json.loads(row.points))
    return Curve(
        row.id,
        row.mrid,
        row.program_id,
        row.curve_type,
        points,
        row.x_multiplier,
        row.y_multiplier,
        row.y_ref_type,
        row.creation_time,
        row.description,
        json.loads(row.extras),
    )


# ---- groups ----------------------------------------------------------------------------
async def _live_group(s: AsyncSession, group_id: int) -> DerGroupRow:
    row = await s.get(DerGroupRow, group_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no group {group_id}")
    return row


async def insert_group(
    s: AsyncSession, description: str, level: str | None, parent_id: int | None, now: int, pen: int
) -> Group:
    if parent_id is not None:
        await _live_group(s, parent_id)
    row = DerGroupRow(
        mrid="", description=description, level=level, parent_id=parent_id, created_at=now
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    row.mrid = _mrid(KIND_GROUP, row.id, pen)
    return _group(row)


async def select_groups(s: AsyncSession) -> dict[int, Group]:
    """The live groups (a deleted one is history only)."""
    rows = await s.scalars(
        select(DerGroupRow)
        .where(col(DerGroupRow.deleted_at).is_(None))
        .order_by(col(DerGroupRow.id))
    )
    return {g.id: g for g in map(_group, rows)}


async def insert_members(s: AsyncSession, group_id: int, device_ids: Sequence[int]) -> list[int]:
    """Add devices to a group; members already there are kept. Answers the ones added."""
    await _live_group(s, group_id)
    rows = await s.scalars(
        select(DerGroupMemberRow).where(col(DerGroupMemberRow.group_id) == group_id)
    )
    present = {r.end_device_id for r in rows}
    new = [d for d in dict.fromkeys(device_ids) if d not in present]
    s.add_all(DerGroupMemberRow(group_id=group_id, end_device_id=d) for d in new)
    await s.flush()
    return new


async def delete_member(s: AsyncSession, group_id: int, device_id: int) -> bool:
    await _live_group(s, group_id)
    existing = await s.get(DerGroupMemberRow, (group_id, device_id))
    if existing is None:
        return False
    await s.delete(existing)
    await s.flush()
    return True


async def select_memberships(
    s: AsyncSession, device_ids: Sequence[int] | None = None
) -> dict[int, set[int]]:
    """device id -> the groups it is directly a member of."""
    found: dict[int, set[int]] = {}
    if device_ids is None:
        chunks: list[list[int] | None] = [None]
    else:
        ids = list(device_ids)
        chunks = [ids[i : i + 500] for i in range(0, len(ids), 500)]
    for chunk in chunks:
        query = select(DerGroupMemberRow)
        if chunk is not None:
            query = query.where(col(DerGroupMemberRow.end_device_id).in_(chunk))
        for row in await s.scalars(query):
            found.setdefault(row.end_device_id, set()).add(row.group_id)
    return found


async def select_member_groups(
    s: AsyncSession, *, lfdi: str, aggregator_id: int | None = None
) -> set[int]:
    """The groups the devices of one client scope are directly members of: its own device
    (lfdi) and, for an aggregator, every device it manages. One query answering at most one
    row per group, whatever the size of the fleet."""
    owned = col(EndDeviceRow.lfdi) == lfdi
    if aggregator_id is not None:
        owned = or_(owned, col(EndDeviceRow.aggregator_id) == aggregator_id)
    query = (
        select(DerGroupMemberRow.group_id)
        .join(EndDeviceRow, col(EndDeviceRow.id) == col(DerGroupMemberRow.end_device_id))
        .where(owned)
        .distinct()
    )
    return set(await s.scalars(query))


# ---- programs --------------------------------------------------------------------------
async def insert_program(
    s: AsyncSession, group_id: int, description: str, primacy: int, now: int, pen: int
) -> Program:
    await _live_group(s, group_id)
    row = DerProgramRow(
        mrid="", group_id=group_id, description=description, primacy=primacy, created_at=now
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    row.mrid = _mrid(KIND_PROGRAM, row.id, pen)
    return _program(row)


async def update_program(
    s: AsyncSession, program_id: int, description: str | None, primacy: int | None
) -> Program:
    row = await s.get(DerProgramRow, program_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no program {program_id}")
    if description is not None:
        row.description = description
    if primacy is not None:
        row.primacy = primacy
    row.version += 1
    await s.flush()
    return _program(row)


async def select_programs(s: AsyncSession, group_id: int | None = None) -> list[Program]:
    """Live programs ordered by primacy then id (the DERProgramList order)."""
    query = (
        select(DerProgramRow)
        .where(col(DerProgramRow.deleted_at).is_(None))
        .order_by(col(DerProgramRow.primacy), col(DerProgramRow.id))
    )
    if group_id is not None:
        query = query.where(col(DerProgramRow.group_id) == group_id)
    return [_program(r) for r in await s.scalars(query)]


async def select_program(s: AsyncSession, program_id: int) -> Program | None:
    """A program, deleted ones included (Program.deleted_at): their hrefs still answer.
    (Core reads here and below: no ORM objects for what is only read; every writer of these
    tables flushes before it returns.)"""
    table = DerProgramRow.__table__  # type: ignore[attr-defined]
    row = (await s.execute(select(table).where(table.c.id == program_id))).first()
    return None if row is None else _program(row)


async def delete_program(s: AsyncSession, program_id: int, now: int) -> list[Control]:
    """Mark a live program deleted (the row stays as history) and cancel its controls not yet
    ended or cancelled; answers the cancelled ones."""
    row = await s.get(DerProgramRow, program_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no program {program_id}")
    return await _delete_programs(s, [row], now)


async def _delete_programs(
    s: AsyncSession, programs: Sequence[DerProgramRow], now: int
) -> list[Control]:
    ids = [p.id for p in programs if p.id is not None]
    if not ids:
        return []
    controls = await s.scalars(
        select(DerControlRow.id).where(col(DerControlRow.program_id).in_(ids))
    )
    cancelled = await update_controls_cancelled(
        s, [c for c in controls if c is not None], now, False
    )
    for program in programs:
        program.deleted_at = now
        program.version += 1
    await s.flush()
    return cancelled


@dataclass(frozen=True, slots=True)
class DeletedGroup:
    """What deleting a group took with it: its programs, their cancelled controls, and the
    devices that were its members (they leave its FunctionSetAssignments)."""

    programs: tuple[Program, ...]
    cancelled: tuple[Control, ...]
    members: tuple[int, ...]


async def delete_group(s: AsyncSession, group_id: int, now: int) -> DeletedGroup:
    """Mark a live group without live sub-groups deleted, with its programs as
    delete_program does; its membership rows stay (history), its hrefs answer 404."""
    row = await _live_group(s, group_id)
    children = await s.scalars(
        select(DerGroupRow.id).where(
            col(DerGroupRow.parent_id) == group_id, col(DerGroupRow.deleted_at).is_(None)
        )
    )
    if children.first() is not None:
        raise Conflict(f"group {group_id} has sub-groups: delete them first")
    rows = list(
        await s.scalars(
            select(DerProgramRow).where(
                col(DerProgramRow.group_id) == group_id, col(DerProgramRow.deleted_at).is_(None)
            )
        )
    )
    cancelled = await _delete_programs(s, rows, now)
    row.deleted_at = now
    members = await s.scalars(
        select(DerGroupMemberRow.end_device_id).where(col(DerGroupMemberRow.group_id) == group_id)
    )
    await s.flush()
    return DeletedGroup(tuple(_program(r) for r in rows), tuple(cancelled), tuple(sorted(members)))


# ---- controls ---------------------------------------------------------------------------
#: Ids per IN (...) list: well under what SQLite (32,766) and asyncpg (32,767) bind.
CHUNK = 500
_CONTROLS = DerControlRow.__table__  # type: ignore[attr-defined]


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _control_of(row: Any) -> Control:
    """A Control from a core row of der_control (no ORM object: nothing in the session's
    identity map to go stale when a bulk statement changes the row)."""
    return Control(
        id=row.id,
        mrid=row.mrid,
        program_id=row.program_id,
        description=row.description,
        creation_time=row.creation_time,
        start=row.start,
        duration=row.duration,
        base=json.loads(row.base),
        randomize_start=row.randomize_start,
        randomize_duration=row.randomize_duration,
        response_required=row.response_required,
        cancelled_at=row.cancelled_at,
        cancel_randomized=row.cancel_randomized,
        version=row.version,
    )


async def insert_controls(s: AsyncSession, controls: Sequence[Control], pen: int) -> list[Control]:
    """Insert controls (ids ignored): with the unit of work, a schedule lands whole or not.

    One executemany INSERT whatever the count (the program engine writes 12,000 at once),
    ids and mRIDs minted first; the programs are checked with one query per 500."""
    if not controls:
        return []
    wanted = list(dict.fromkeys(c.program_id for c in controls))
    found: set[int] = set()
    for chunk in _chunks(wanted):
        found.update(
            await s.scalars(select(DerProgramRow.id).where(col(DerProgramRow.id).in_(chunk)))
        )
    missing = [p for p in wanted if p not in found]
    if missing:
        raise NotFound(f"no program {missing[0]}")
    ids = await _new_control_ids(s, len(controls))
    mrids = [_mrid(KIND_CONTROL, i, pen) for i in ids]
    params = [
        {
            "id": i,
            "mrid": m,
            "program_id": c.program_id,
            "description": c.description,
            "creation_time": c.creation_time,
            "start": c.start,
            "duration": c.duration,
            "base": json.dumps(dict(c.base)),
            "randomize_start": c.randomize_start,
            "randomize_duration": c.randomize_duration,
            "response_required": c.response_required,
            "cancelled_at": None,
            "cancel_randomized": False,
            "version": 0,
        }
        for c, i, m in zip(controls, ids, mrids, strict=True)
    ]
    await s.execute(insert(_CONTROLS), params)
    return [
        replace(c, id=i, mrid=m, cancelled_at=None, cancel_randomized=False, version=0)
        for c, i, m in zip(controls, ids, mrids, strict=True)
    ]


async def _new_control_ids(s: AsyncSession, count: int) -> list[int]:
    """Ids for new controls, known before the INSERT so that their mRIDs go in with them.

    PostgreSQL: the column's own sequence. SQLite: the ids it would pick itself (rowid:
    max + 1, ...); the unit of work holds the database's write lock (BEGIN IMMEDIATE), so
    no other writer, in this process or another, can take them meanwhile."""
    if s.get_bind().dialect.name == "postgresql":
        query = text(
            "SELECT nextval(pg_get_serial_sequence('der_control', 'id')) "
            "FROM generate_series(1, :n)"
        )
        return sorted(int(i) for i in await s.scalars(query, {"n": count}))
    top = await s.scalar(select(func.max(_CONTROLS.c.id)))
    first = int(top or 0) + 1
    return list(range(first, first + count))


def _controls_query(program_ids: Sequence[int]) -> Any:
    return (
        select(_CONTROLS)
        .where(_CONTROLS.c.program_id.in_(program_ids))
        .order_by(_CONTROLS.c.start, _CONTROLS.c.creation_time.desc(), _CONTROLS.c.id.desc())
    )


async def select_controls(s: AsyncSession, program_ids: Sequence[int]) -> list[Control]:
    """All controls of these programs, in DERControlList order (start, newest first)."""
    if not program_ids:
        return []
    if len(program_ids) <= CHUNK:
        return [_control_of(r) for r in await s.execute(_controls_query(program_ids))]
    by_program = await select_controls_by_program(s, program_ids)
    merged = [c for controls in by_program.values() for c in controls]
    return sorted(merged, key=lambda c: (c.start, -c.creation_time, -c.id))


async def select_controls_by_program(
    s: AsyncSession, program_ids: Sequence[int]
) -> dict[int, list[Control]]:
    """Every program's controls in DERControlList order, one query per 500 programs (what the
    program engine reads for all the groups an event reached)."""
    found: dict[int, list[Control]] = {p: [] for p in program_ids}
    for chunk in _chunks(list(found)):
        for row in await s.execute(_controls_query(chunk)):
            found[row.program_id].append(_control_of(row))
    return found


async def select_control(s: AsyncSession, control_id: int) -> Control | None:
    row = (await s.execute(select(_CONTROLS).where(_CONTROLS.c.id == control_id))).first()
    return None if row is None else _control_of(row)


async def update_controls_cancelled(
    s: AsyncSession, control_ids: Sequence[int], now: int, randomized: bool
) -> list[Control]:
    """Cancel the given controls that have not ended or been cancelled yet (in the order
    given). One query per 500 to read them and one executemany UPDATE, however many."""
    ids = list(dict.fromkeys(control_ids))
    rows: dict[int, Any] = {}
    for chunk in _chunks(ids):
        query = select(_CONTROLS).where(
            _CONTROLS.c.id.in_(chunk),
            _CONTROLS.c.cancelled_at.is_(None),
            _CONTROLS.c.start + _CONTROLS.c.duration > now,
        )
        rows.update((r.id, r) for r in await s.execute(query))
    changed = [
        replace(c, cancelled_at=now, cancel_randomized=randomized, version=c.version + 1)
        for c in (_control_of(rows[i]) for i in ids if i in rows)
    ]
    if not changed:
        return []
    await s.execute(
        update(_CONTROLS)
        .where(_CONTROLS.c.id == bindparam("b_id"))
        .values(cancelled_at=now, cancel_randomized=randomized, version=bindparam("b_version")),
        [{"b_id": c.id, "b_version": c.version} for c in changed],
    )
    _refresh_loaded(s, changed)
    return changed


def _refresh_loaded(s: AsyncSession, controls: Sequence[Control]) -> None:
    """Bulk statements bypass the ORM: bring any DerControlRow this session already holds up
    to date, so a later read in the same unit of work sees what was written."""
    identity = s.sync_session.identity_map
    for c in controls:
        row = identity.get(identity_key(DerControlRow, c.id))
        if row is not None:
            for name in ("cancelled_at", "cancel_randomized", "version", "mrid"):
                set_committed_value(row, name, getattr(c, name))


# ---- default controls and curves ----------------------------------------------------------
# ---- time boundaries told to subscribers (services/boundaries.py) -------------------------
def _latest_end() -> Any:
    """domain.der.latest_end in SQL: the end pushed out by positive randomizations."""
    late = col(DerControlRow.randomize_start)
    stretch = col(DerControlRow.randomize_duration)
    return (
        col(DerControlRow.start)
        + col(DerControlRow.duration)
        + case((late > 0, late), else_=0)
        + case((stretch > 0, stretch), else_=0)
    )


async def select_controls_ending_after(
    s: AsyncSession, after: int, program_ids: Sequence[int] | None = None
) -> tuple[list[Control], dict[int, int | None]]:
    """Controls whose latest end is after `after` (of these programs, or all), with each
    program's group (None once the program is deleted): what may still start or end."""
    deleted: Any = col(DerProgramRow.deleted_at).label("deleted_at")
    query: Any = (
        select(_CONTROLS, DerProgramRow.group_id, deleted)
        .join(DerProgramRow, col(DerProgramRow.id) == _CONTROLS.c.program_id)
        .where(_latest_end() > after)
        .order_by(_CONTROLS.c.id)
    )
    if program_ids is not None:
        if not program_ids:
            return [], {}
        query = query.where(col(DerControlRow.program_id).in_(sorted(program_ids)))
    controls: list[Control] = []
    groups: dict[int, int | None] = {}
    for row in (await s.execute(query)).all():
        controls.append(_control_of(row))
        groups[row.program_id] = None if row.deleted_at is not None else row.group_id
    return controls, groups


async def insert_boundary_notices(
    s: AsyncSession, notices: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Claim (program id, moment) pairs; answers those this transaction inserted. A pair
    another transaction holds is skipped (on PostgreSQL, after waiting for it to commit or
    roll back), so of several workers telling one boundary exactly one writes the intents."""
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    claimed: list[tuple[int, int]] = []
    ordered = sorted(set(notices))  # one lock order for every worker
    for begin in range(0, len(ordered), 500):
        chunk = ordered[begin : begin + 500]
        statement = (
            insert(DerBoundaryNoticeRow)
            .values([{"program_id": p, "moment": m} for p, m in chunk])
            .on_conflict_do_nothing()
            .returning(col(DerBoundaryNoticeRow.program_id), col(DerBoundaryNoticeRow.moment))
        )
        claimed += [(int(p), int(m)) for p, m in (await s.execute(statement)).all()]
    return sorted(claimed)


async def select_last_boundary_notice(s: AsyncSession, not_after: int) -> int | None:
    """The latest moment told, not after `not_after`: where a starting worker resumes, so
    boundaries passed while no worker ran are told when one starts."""
    query = select(func.max(DerBoundaryNoticeRow.moment)).where(
        col(DerBoundaryNoticeRow.moment) <= not_after
    )
    found = (await s.execute(query)).scalar_one_or_none()
    return None if found is None else int(found)


async def delete_boundary_notices_before(s: AsyncSession, moment: int) -> None:
    await s.execute(delete(DerBoundaryNoticeRow).where(col(DerBoundaryNoticeRow.moment) < moment))


async def select_default_control(s: AsyncSession, program_id: int) -> DefaultControl | None:
    table = DerDefaultControlRow.__table__  # type: ignore[attr-defined]
    row = (await s.execute(select(table).where(table.c.program_id == program_id))).first()
    return None if row is None else _default_control(row)


def _default_control(row: Any) -> DefaultControl:
    return DefaultControl(
        row.program_id,
        row.mrid,
        json.loads(row.base),
        json.loads(row.settings),
        row.version,
        row.updated_at,
    )


async def update_default_control(
    s: AsyncSession,
    program_id: int,
    base: Mapping[str, Any],
    settings: Mapping[str, int],
    now: int,
    pen: int,
) -> DefaultControl:
    """Create or replace: fields not given are removed, never merged; a new version."""
    if await s.get(DerProgramRow, program_id) is None:
        raise NotFound(f"no program {program_id}")
    row = await s.get(DerDefaultControlRow, program_id)
    version = 0 if row is None else row.version + 1
    mrid = _mrid(KIND_DEFAULT, program_id, pen, version)
    if row is None:
        row = DerDefaultControlRow(
            program_id=program_id, mrid=mrid, base="", settings="", updated_at=now
        )
        s.add(row)
    row.mrid, row.version, row.updated_at = mrid, version, now
    row.base = json.dumps(dict(base))
    row.settings = json.dumps(dict(settings))
    await s.flush()
    return DefaultControl(program_id, mrid, dict(base), dict(settings), version, now)


async def insert_curve(s: AsyncSession, curve: Curve, pen: int) -> Curve:
    if await s.get(DerProgramRow, curve.program_id) is None:
        raise NotFound(f"no program {curve.program_id}")
    row = DerCurveRow(
        mrid="",
        program_id=curve.program_id,
        curve_type=curve.curve_type,
        points=json.dumps([list(p) for p in curve.points]),
        x_multiplier=curve.x_multiplier,
        y_multiplier=curve.y_multiplier,
        y_ref_type=curve.y_ref_type,
        creation_time=curve.creation_time,
        description=curve.description,
        extras=json.dumps(dict(curve.extras)),
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    row.mrid = _mrid(KIND_CURVE, row.id, pen)
    await s.flush()
    return _curve(row)


async def select_curves(s: AsyncSession, program_id: int) -> list[Curve]:
    table = DerCurveRow.__table__  # type: ignore[attr-defined]
    query = select(table).where(table.c.program_id == program_id).order_by(table.c.id)
    return [_curve(r) for r in await s.execute(query)]


# ---- responses ----------------------------------------------------------------------------
async def insert_response(
    s: AsyncSession, control_id: int, device_id: int, lfdi: str, status: int, created: int, now: int
) -> int:
    row = DerResponseRow(
        control_id=control_id,
        end_device_id=device_id,
        lfdi=lfdi,
        status=status,
        created_date_time=created,
        received_at=now,
    )
    s.add(row)
    await s.flush()
    assert row.id is not None
    return row.id


async def select_responses(
    s: AsyncSession,
    *,
    program_id: int | None = None,
    device_id: int | None = None,
    response_id: int | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Newest first, with the control's mRID: for the admin API and ResponseLists."""
    query = (
        select(DerResponseRow, DerControlRow)
        .join(DerControlRow, col(DerControlRow.id) == col(DerResponseRow.control_id))
        .order_by(col(DerResponseRow.created_date_time).desc(), col(DerResponseRow.id).desc())
        .limit(limit)
    )
    if program_id is not None:
        query = query.where(col(DerControlRow.program_id) == program_id)
    if device_id is not None:
        query = query.where(col(DerResponseRow.end_device_id) == device_id)
    if response_id is not None:
        query = query.where(col(DerResponseRow.id) == response_id)
    return [
        {
            "id": response.id,
            "subject": control.mrid,
            "control": control.id,
            "program": control.program_id,
            "lfdi": response.lfdi,
            "status": response.status,
            "created_date_time": response.created_date_time,
            "received_at": response.received_at,
        }
        for response, control in (await s.execute(query)).all()
    ]


async def delete_all(s: AsyncSession) -> None:
    """Lab reset: every group, program, control, default, curve and response, and the
    program engine's links to them."""
    for table in (
        DerBoundaryNoticeRow,
        EngineForcedRow,
        EngineMappingRow,
        EngineControlRow,
        EngineEnrollmentRow,
        EngineProgramRow,
        DerResponseRow,
        DerCurveRow,
        DerDefaultControlRow,
        DerControlRow,
        DerProgramRow,
        DerGroupMemberRow,
    ):
        await s.execute(delete(table))
    await s.execute(delete(DerGroupRow).where(col(DerGroupRow.parent_id).is_not(None)))
    await s.execute(delete(DerGroupRow))


class DerStore:
    """One-transaction reads for read paths outside a unit of work."""

    def __init__(self, store: Store, pen: int) -> None:
        self.store = store
        self.pen = pen

    async def groups(self) -> list[Group]:
        async with self.store.transaction() as s:
            return list((await select_groups(s)).values())

    async def memberships(self, device_ids: Sequence[int] | None = None) -> dict[int, set[int]]:
        async with self.store.transaction() as s:
            return await select_memberships(s, device_ids)

    async def members(self, group_id: int) -> list[int]:
        async with self.store.transaction() as s:
            rows = await s.scalars(
                select(DerGroupMemberRow).where(col(DerGroupMemberRow.group_id) == group_id)
            )
            return sorted(r.end_device_id for r in rows)

    async def member_groups(self, *, lfdi: str, aggregator_id: int | None = None) -> set[int]:
        async with self.store.transaction() as s:
            return await select_member_groups(s, lfdi=lfdi, aggregator_id=aggregator_id)

    async def programs(self, group_id: int | None = None) -> list[Program]:
        async with self.store.transaction() as s:
            return await select_programs(s, group_id)

    async def program(self, program_id: int) -> Program | None:
        async with self.store.transaction() as s:
            return await select_program(s, program_id)

    async def program_data(
        self, program_ids: Sequence[int]
    ) -> dict[int, tuple[Program, list[Control], list[Curve], DefaultControl | None]]:
        """Programs with their controls, curves and default control, read in one transaction
        with one query of each kind per 500 programs (what DERControlList renderings need:
        after an event reached 1,000 programs, their misses load together). Unknown ids are
        left out."""
        programs: dict[int, Program] = {}
        curves: dict[int, list[Curve]] = {}
        defaults: dict[int, DefaultControl] = {}
        p_table = DerProgramRow.__table__  # type: ignore[attr-defined]
        c_table = DerCurveRow.__table__  # type: ignore[attr-defined]
        d_table = DerDefaultControlRow.__table__  # type: ignore[attr-defined]
        async with self.store.transaction() as s:
            for chunk in _chunks(list(dict.fromkeys(program_ids))):
                for row in await s.execute(select(p_table).where(p_table.c.id.in_(chunk))):
                    programs[row.id] = _program(row)
            ids = list(programs)
            controls = await select_controls_by_program(s, ids)
            for chunk in _chunks(ids):
                query = select(c_table).where(c_table.c.program_id.in_(chunk))
                for row in await s.execute(query.order_by(c_table.c.id)):
                    curves.setdefault(row.program_id, []).append(_curve(row))
                query = select(d_table).where(d_table.c.program_id.in_(chunk))
                for row in await s.execute(query):
                    defaults[row.program_id] = _default_control(row)
        return {
            pid: (program, controls[pid], curves.get(pid, []), defaults.get(pid))
            for pid, program in programs.items()
        }

    async def controls_by_program(self, program_ids: Sequence[int]) -> dict[int, list[Control]]:
        if not program_ids:
            return {}
        async with self.store.transaction() as s:
            return await select_controls_by_program(s, program_ids)

    async def controls(self, program_ids: Sequence[int]) -> list[Control]:
        if not program_ids:
            return []
        async with self.store.transaction() as s:
            return await select_controls(s, program_ids)

    async def control(self, control_id: int) -> Control | None:
        async with self.store.transaction() as s:
            return await select_control(s, control_id)

    async def control_by_mrid(self, mrid: str) -> Control | None:
        async with self.store.transaction() as s:
            query = select(_CONTROLS).where(_CONTROLS.c.mrid == mrid.upper())
            row = (await s.execute(query)).first()
            return None if row is None else _control_of(row)

    async def default_control(self, program_id: int) -> DefaultControl | None:
        async with self.store.transaction() as s:
            return await select_default_control(s, program_id)

    async def curves(self, program_id: int) -> list[Curve]:
        async with self.store.transaction() as s:
            return await select_curves(s, program_id)

    async def responses(
        self,
        *,
        program_id: int | None = None,
        device_id: int | None = None,
        response_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        async with self.store.transaction() as s:
            return await select_responses(
                s, program_id=program_id, device_id=device_id, response_id=response_id, limit=limit
            )
