"""Operators, their sessions and the audit log (session functions; the caller's unit of
work owns the transaction)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from csip.domain.operators import AuditEntry, Operator, Session
from csip.errors import Conflict
from csip.store.tables_operators import AuditRow, OperatorRow, OperatorSessionRow


def _operator(row: OperatorRow) -> Operator:
    assert row.id is not None
    return Operator(
        row.id,
        row.name,
        row.role,
        row.password_hash,
        row.created_at,
        row.failed_logins,
        row.locked_until,
    )


def _session(row: OperatorSessionRow) -> Session:
    return Session(row.token_hash, row.operator_id, row.csrf, row.created_at, row.expires_at)


def _audit(row: AuditRow) -> AuditEntry:
    assert row.id is not None
    return AuditEntry(
        row.id,
        row.at,
        row.operator,
        row.action,
        row.target,
        None if row.before is None else json.loads(row.before),
        None if row.after is None else json.loads(row.after),
    )


async def insert_operator(
    s: AsyncSession, name: str, role: str, password_hash: str, now: int
) -> Operator:
    row = OperatorRow(name=name, role=role, password_hash=password_hash, created_at=now)
    s.add(row)
    try:
        await s.flush()
    except IntegrityError as exc:
        raise Conflict(f"an operator named {name!r} already exists") from exc
    return _operator(row)


async def select_operator(s: AsyncSession, name: str) -> Operator | None:
    row = (await s.scalars(select(OperatorRow).where(col(OperatorRow.name) == name))).first()
    return None if row is None else _operator(row)


async def select_operator_by_id(s: AsyncSession, operator_id: int) -> Operator | None:
    row = await s.get(OperatorRow, operator_id)
    return None if row is None else _operator(row)


async def select_operators(s: AsyncSession) -> list[Operator]:
    rows = await s.scalars(select(OperatorRow).order_by(col(OperatorRow.name)))
    return [_operator(r) for r in rows]


async def update_operator(s: AsyncSession, operator_id: int, **values: Any) -> None:
    row = await s.get(OperatorRow, operator_id)
    if row is not None:
        for name, value in values.items():
            setattr(row, name, value)
        await s.flush()


async def delete_operator(s: AsyncSession, name: str) -> bool:
    operator = await select_operator(s, name)
    if operator is None:
        return False
    await s.execute(
        delete(OperatorSessionRow).where(col(OperatorSessionRow.operator_id) == operator.id)
    )
    await s.execute(delete(OperatorRow).where(col(OperatorRow.id) == operator.id))
    return True


async def insert_session(s: AsyncSession, session: Session) -> None:
    s.add(
        OperatorSessionRow(
            token_hash=session.token_hash,
            operator_id=session.operator_id,
            csrf=session.csrf,
            created_at=session.created_at,
            expires_at=session.expires_at,
        )
    )
    await s.flush()


async def select_session(s: AsyncSession, token_hash: str) -> Session | None:
    row = await s.get(OperatorSessionRow, token_hash)
    return None if row is None else _session(row)


async def delete_session(s: AsyncSession, token_hash: str) -> None:
    await s.execute(
        delete(OperatorSessionRow).where(col(OperatorSessionRow.token_hash) == token_hash)
    )


async def delete_sessions_expired(s: AsyncSession, now: int) -> None:
    await s.execute(delete(OperatorSessionRow).where(col(OperatorSessionRow.expires_at) <= now))


async def insert_audit(
    s: AsyncSession, at: int, operator: str, action: str, target: str, before: Any, after: Any
) -> None:
    s.add(
        AuditRow(
            at=at,
            operator=operator[:64],
            action=action[:64],
            target=target[:200],
            before=None if before is None else json.dumps(before, sort_keys=True),
            after=None if after is None else json.dumps(after, sort_keys=True),
        )
    )
    await s.flush()


async def select_audit(
    s: AsyncSession, offset: int, limit: int, operator: str | None = None
) -> tuple[int, list[AuditEntry]]:
    """(all, page) of the audit log, newest first."""
    count_q = select(func.count()).select_from(AuditRow)
    page_q = select(AuditRow).order_by(col(AuditRow.id).desc())
    if operator is not None:
        count_q = count_q.where(col(AuditRow.operator) == operator)
        page_q = page_q.where(col(AuditRow.operator) == operator)
    total = int((await s.execute(count_q)).scalar_one())
    rows = await s.scalars(page_q.offset(offset).limit(limit))
    return total, [_audit(r) for r in rows]
