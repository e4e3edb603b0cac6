"""Persistence of the DER function set. Every method is one transaction; controls are never
deleted (only cancelled); programs and groups are marked deleted (history stays) and removed
only by a lab reset. The module-level functions take the caller's session."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, delete, select

from csip.domain.der import Control, Curve, DefaultControl, Group, Program
from csip.domain.devices import mint_mrid
from csip.errors import Conflict, NotFound
from csip.store.store import Store
from csip.store.subscriptions import notify_in
from csip.store.tables_der import (
    DerControlRow,
    DerCurveRow,
    DerDefaultControlRow,
    DerGroupMemberRow,
    DerGroupRow,
    DerProgramRow,
    DerResponseRow,
)

#: High bits of minted mRIDs, one per kind of object, so ids never collide across kinds.
KIND_GROUP, KIND_PROGRAM, KIND_CONTROL, KIND_DEFAULT, KIND_CURVE = 1, 2, 3, 4, 5
KIND_READING_SET = 6  # the metering read side (services/metering.py)


def _mrid(kind: int, ident: int, pen: int, version: int = 0) -> str:
    return mint_mrid((kind << 80) | (version << 48) | ident, pen)


def _group(row: DerGroupRow) -> Group:
    assert row.id is not None
    return Group(row.id, row.mrid, row.description, row.level, row.parent_id, row.created_at)


def _program(row: DerProgramRow) -> Program:
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


def _control(row: DerControlRow) -> Control:
    assert row.id is not None
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


def _curve(row: DerCurveRow) -> Curve:
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


async def _live_group(s: AsyncSession, group_id: int) -> DerGroupRow:
    row = await s.get(DerGroupRow, group_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no group {group_id}")
    return row


async def cancel_controls(
    s: AsyncSession, control_ids: Sequence[int], now: int, randomized: bool
) -> list[Control]:
    """Cancel, inside the caller's transaction, the controls not yet ended or cancelled."""
    changed = []
    for control_id in control_ids:
        row = await s.get(DerControlRow, control_id)
        if row is None or row.cancelled_at is not None or row.start + row.duration <= now:
            continue
        row.cancelled_at = now
        row.cancel_randomized = randomized
        row.version += 1
        changed.append(_control(row))
    await notify_in(s, sorted({f"/derp/{c.program_id}/derc" for c in changed}), now)
    return changed


async def delete_programs(
    s: AsyncSession, programs: Sequence[DerProgramRow], now: int
) -> list[Control]:
    """Mark programs deleted and cancel their controls, inside the caller's transaction."""
    ids = [p.id for p in programs if p.id is not None]
    if not ids:
        return []
    controls = await s.scalars(
        select(DerControlRow.id).where(col(DerControlRow.program_id).in_(ids))
    )
    cancelled = await cancel_controls(s, [c for c in controls if c is not None], now, False)
    for program in programs:
        program.deleted_at = now
        program.version += 1
    await notify_in(s, sorted({f"/fsa/{p.group_id}/derp" for p in programs}), now)
    return cancelled


class DerStore:
    def __init__(self, store: Store, pen: int) -> None:
        self.store = store
        self.pen = pen

    # ---- groups ----------------------------------------------------------------
    async def create_group(
        self, description: str, level: str | None, parent_id: int | None, now: int
    ) -> Group:
        async with self.store.transaction() as s:
            if parent_id is not None:
                await _live_group(s, parent_id)
            row = DerGroupRow(
                mrid="", description=description, level=level, parent_id=parent_id, created_at=now
            )
            s.add(row)
            await s.flush()
            assert row.id is not None
            row.mrid = _mrid(KIND_GROUP, row.id, self.pen)
            return _group(row)

    async def groups(self) -> list[Group]:
        async with self.store.transaction() as s:
            rows = await s.scalars(
                select(DerGroupRow)
                .where(col(DerGroupRow.deleted_at).is_(None))
                .order_by(col(DerGroupRow.id))
            )
            return [_group(r) for r in rows]

    async def set_member(self, group_id: int, device_id: int, member: bool, now: int) -> None:
        async with self.store.transaction() as s:
            await _live_group(s, group_id)
            existing = await s.get(DerGroupMemberRow, (group_id, device_id))
            if member and existing is None:
                s.add(DerGroupMemberRow(group_id=group_id, end_device_id=device_id))
            elif not member and existing is not None:
                await s.delete(existing)
            else:
                return
            await notify_in(s, [f"/edev/{device_id}/fsa"], now)

    async def add_members(self, group_id: int, device_ids: Sequence[int], now: int) -> int:
        """Add many devices to a group in one transaction; members already there are kept."""
        async with self.store.transaction() as s:
            await _live_group(s, group_id)
            rows = await s.scalars(
                select(DerGroupMemberRow).where(col(DerGroupMemberRow.group_id) == group_id)
            )
            present = {r.end_device_id for r in rows}
            new = [d for d in dict.fromkeys(device_ids) if d not in present]
            s.add_all(DerGroupMemberRow(group_id=group_id, end_device_id=d) for d in new)
            await notify_in(s, [f"/edev/{d}/fsa" for d in new], now)
            return len(new)

    async def memberships(self, device_ids: Sequence[int] | None = None) -> dict[int, set[int]]:
        """device id -> the groups it is directly a member of."""
        async with self.store.transaction() as s:
            query = select(DerGroupMemberRow)
            if device_ids is not None:
                query = query.where(col(DerGroupMemberRow.end_device_id).in_(device_ids))
            found: dict[int, set[int]] = {}
            for row in await s.scalars(query):
                found.setdefault(row.end_device_id, set()).add(row.group_id)
            return found

    async def members(self, group_id: int) -> list[int]:
        async with self.store.transaction() as s:
            rows = await s.scalars(
                select(DerGroupMemberRow).where(col(DerGroupMemberRow.group_id) == group_id)
            )
            return sorted(r.end_device_id for r in rows)

    # ---- programs --------------------------------------------------------------------
    async def create_program(
        self, group_id: int, description: str, primacy: int, now: int
    ) -> Program:
        async with self.store.transaction() as s:
            await _live_group(s, group_id)
            row = DerProgramRow(
                mrid="", group_id=group_id, description=description, primacy=primacy, created_at=now
            )
            s.add(row)
            await s.flush()
            assert row.id is not None
            row.mrid = _mrid(KIND_PROGRAM, row.id, self.pen)
            await notify_in(s, [f"/fsa/{group_id}/derp"], now)
            return _program(row)

    async def update_program(
        self, program_id: int, description: str | None, primacy: int | None, now: int
    ) -> Program:
        async with self.store.transaction() as s:
            row = await s.get(DerProgramRow, program_id)
            if row is None or row.deleted_at is not None:
                raise NotFound(f"no program {program_id}")
            if description is not None:
                row.description = description
            if primacy is not None:
                row.primacy = primacy
            row.version += 1
            await notify_in(s, [f"/fsa/{row.group_id}/derp"], now)
            return _program(row)

    async def programs(self, group_id: int | None = None) -> list[Program]:
        """Programs ordered by primacy then id (the DERProgramList order)."""
        async with self.store.transaction() as s:
            query = (
                select(DerProgramRow)
                .where(col(DerProgramRow.deleted_at).is_(None))
                .order_by(col(DerProgramRow.primacy), col(DerProgramRow.id))
            )
            if group_id is not None:
                query = query.where(col(DerProgramRow.group_id) == group_id)
            return [_program(r) for r in await s.scalars(query)]

    async def program(self, program_id: int) -> Program | None:
        async with self.store.transaction() as s:
            row = await s.get(DerProgramRow, program_id)
            return None if row is None else _program(row)

    # ---- controls ---------------------------------------------------------------------
    async def create_controls(self, controls: Sequence[Control]) -> list[Control]:
        """Insert controls (ids ignored) in one transaction: a schedule lands whole or not."""
        async with self.store.transaction() as s:
            rows = []
            for c in controls:
                if await s.get(DerProgramRow, c.program_id) is None:
                    raise NotFound(f"no program {c.program_id}")
                rows.append(
                    DerControlRow(
                        mrid="",
                        program_id=c.program_id,
                        description=c.description,
                        creation_time=c.creation_time,
                        start=c.start,
                        duration=c.duration,
                        base=json.dumps(dict(c.base)),
                        randomize_start=c.randomize_start,
                        randomize_duration=c.randomize_duration,
                        response_required=c.response_required,
                    )
                )
            s.add_all(rows)
            await s.flush()
            for row in rows:
                assert row.id is not None
                row.mrid = _mrid(KIND_CONTROL, row.id, self.pen)
            hrefs = sorted({f"/derp/{c.program_id}/derc" for c in controls})
            await notify_in(s, hrefs, max((c.creation_time for c in controls), default=0))
            return [_control(r) for r in rows]

    async def controls(self, program_ids: Sequence[int]) -> list[Control]:
        """All controls of these programs, in DERControlList order (start, newest first)."""
        if not program_ids:
            return []
        async with self.store.transaction() as s:
            query = (
                select(DerControlRow)
                .where(col(DerControlRow.program_id).in_(program_ids))
                .order_by(
                    col(DerControlRow.start),
                    col(DerControlRow.creation_time).desc(),
                    col(DerControlRow.id).desc(),
                )
            )
            return [_control(r) for r in await s.scalars(query)]

    async def control(self, control_id: int) -> Control | None:
        async with self.store.transaction() as s:
            row = await s.get(DerControlRow, control_id)
            return None if row is None else _control(row)

    async def control_by_mrid(self, mrid: str) -> Control | None:
        async with self.store.transaction() as s:
            query = select(DerControlRow).where(col(DerControlRow.mrid) == mrid.upper())
            row = (await s.scalars(query)).first()
            return None if row is None else _control(row)

    async def cancel(self, control_ids: Sequence[int], now: int, randomized: bool) -> list[Control]:
        """Cancel the given controls that have not ended or been cancelled yet."""
        async with self.store.transaction() as s:
            return await cancel_controls(s, control_ids, now, randomized)

    async def delete_program(self, program_id: int, now: int) -> list[Control]:
        """Delete a program: its scheduled and active controls are cancelled, it leaves the
        group's DERProgramList (subscribers hear both); the rows stay as history."""
        async with self.store.transaction() as s:
            row = await s.get(DerProgramRow, program_id)
            if row is None or row.deleted_at is not None:
                raise NotFound(f"no program {program_id}")
            return await delete_programs(s, [row], now)

    async def delete_group(self, group_id: int, now: int) -> list[Control]:
        """Delete a group (no live sub-groups): its programs as delete_program does, and it
        leaves its members' FunctionSetAssignmentsLists (subscribers hear it)."""
        async with self.store.transaction() as s:
            row = await s.get(DerGroupRow, group_id)
            if row is None or row.deleted_at is not None:
                raise NotFound(f"no group {group_id}")
            children = await s.scalars(
                select(DerGroupRow.id).where(
                    col(DerGroupRow.parent_id) == group_id, col(DerGroupRow.deleted_at).is_(None)
                )
            )
            if children.first() is not None:
                raise Conflict(f"group {group_id} has sub-groups: delete them first")
            programs = await s.scalars(
                select(DerProgramRow).where(
                    col(DerProgramRow.group_id) == group_id, col(DerProgramRow.deleted_at).is_(None)
                )
            )
            cancelled = await delete_programs(s, list(programs), now)
            row.deleted_at = now
            members = await s.scalars(
                select(DerGroupMemberRow.end_device_id).where(
                    col(DerGroupMemberRow.group_id) == group_id
                )
            )
            await notify_in(s, [f"/edev/{d}/fsa" for d in members], now)
            return cancelled

    # ---- default controls and curves -----------------------------------------------------
    async def default_control(self, program_id: int) -> DefaultControl | None:
        async with self.store.transaction() as s:
            row = await s.get(DerDefaultControlRow, program_id)
            if row is None:
                return None
            return DefaultControl(
                row.program_id,
                row.mrid,
                json.loads(row.base),
                json.loads(row.settings),
                row.version,
                row.updated_at,
            )

    async def put_default_control(
        self, program_id: int, base: Mapping[str, Any], settings: Mapping[str, int], now: int
    ) -> DefaultControl:
        """Create or replace: fields not given are removed, never merged; a new version."""
        async with self.store.transaction() as s:
            if await s.get(DerProgramRow, program_id) is None:
                raise NotFound(f"no program {program_id}")
            row = await s.get(DerDefaultControlRow, program_id)
            version = 0 if row is None else row.version + 1
            mrid = _mrid(KIND_DEFAULT, program_id, self.pen, version)
            if row is None:
                row = DerDefaultControlRow(
                    program_id=program_id, mrid=mrid, base="", settings="", updated_at=now
                )
                s.add(row)
            row.mrid, row.version, row.updated_at = mrid, version, now
            row.base = json.dumps(dict(base))
            row.settings = json.dumps(dict(settings))
            await notify_in(s, [f"/derp/{program_id}/dderc"], now)
            return DefaultControl(program_id, mrid, dict(base), dict(settings), version, now)

    async def create_curve(self, curve: Curve) -> Curve:
        async with self.store.transaction() as s:
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
            row.mrid = _mrid(KIND_CURVE, row.id, self.pen)
            return _curve(row)

    async def curves(self, program_id: int) -> list[Curve]:
        async with self.store.transaction() as s:
            query = (
                select(DerCurveRow)
                .where(col(DerCurveRow.program_id) == program_id)
                .order_by(col(DerCurveRow.id))
            )
            return [_curve(r) for r in await s.scalars(query)]

    # ---- responses ------------------------------------------------------------------------
    async def add_response(
        self, control_id: int, device_id: int, lfdi: str, status: int, created: int, now: int
    ) -> int:
        async with self.store.transaction() as s:
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

    async def responses(
        self,
        *,
        program_id: int | None = None,
        device_id: int | None = None,
        response_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Newest first, with the control's mRID: for the admin API and ResponseLists."""
        async with self.store.transaction() as s:
            query = (
                select(DerResponseRow, DerControlRow)
                .join(DerControlRow, col(DerControlRow.id) == col(DerResponseRow.control_id))
                .order_by(
                    col(DerResponseRow.created_date_time).desc(), col(DerResponseRow.id).desc()
                )
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

    async def reset(self) -> None:
        """Lab reset: every group, program, control, default, curve and response."""
        async with self.store.transaction() as s:
            for table in (
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
