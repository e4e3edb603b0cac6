"""OpenADR 3 objects and VTN clients in the database.

Functions take the session of a ``Store.transaction()`` block, so a service can change an
object, read the subscriptions it must notify and enqueue the outbox rows in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from csip.errors import Conflict
from csip.store.outbox import Session
from csip.store.store import Store
from csip.store.tables_openadr import OadrObjectRow, VtnClientRow


@dataclass
class StoredObject:
    """One OpenADR object as stored: indexed columns plus the wire body (a JSON object)."""

    id: str
    kind: str
    body: dict[str, Any]
    targets: list[str]
    created_at: float
    modified_at: float
    program_id: str | None = None
    event_id: str | None = None
    client_id: str | None = None
    ven_id: str | None = None
    name: str | None = None
    unique_key: str | None = None
    seq: int = 0
    deleted_at: float | None = None


@dataclass(frozen=True)
class VtnClient:
    name: str
    client_id: str
    secret_hash: str
    role: str
    scopes: tuple[str, ...]
    created_at: float


def _object(row: OadrObjectRow) -> StoredObject:
    assert row.seq is not None
    return StoredObject(
        id=row.id,
        kind=row.kind,
        body=json.loads(row.body),
        targets=json.loads(row.targets),
        created_at=row.created_at,
        modified_at=row.modified_at,
        program_id=row.program_id,
        event_id=row.event_id,
        client_id=row.client_id,
        ven_id=row.ven_id,
        name=row.name,
        unique_key=row.unique_key,
        seq=row.seq,
        deleted_at=row.deleted_at,
    )


def _client(row: VtnClientRow) -> VtnClient:
    return VtnClient(
        row.name,
        row.client_id,
        row.secret_hash,
        row.role,
        tuple(json.loads(row.scopes)),
        row.created_at,
    )


def _copy_into(row: OadrObjectRow, obj: StoredObject) -> None:
    row.kind = obj.kind
    row.program_id = obj.program_id
    row.event_id = obj.event_id
    row.client_id = obj.client_id
    row.ven_id = obj.ven_id
    row.name = obj.name
    row.unique_key = obj.unique_key
    row.targets = json.dumps(obj.targets)
    row.body = json.dumps(obj.body, separators=(",", ":"))
    row.created_at = obj.created_at
    row.modified_at = obj.modified_at
    row.deleted_at = obj.deleted_at


async def _unique_taken(session: Session, obj: StoredObject) -> bool:
    if obj.unique_key is None:
        return False
    query = select(OadrObjectRow.id).where(
        col(OadrObjectRow.kind) == obj.kind,
        col(OadrObjectRow.unique_key) == obj.unique_key,
        col(OadrObjectRow.id) != obj.id,
    )
    return (await session.scalars(query)).first() is not None


async def insert(session: Session, obj: StoredObject) -> StoredObject:
    """Add a new object; a live object of the same kind with the same unique name is 409."""
    if await _unique_taken(session, obj):
        raise Conflict(f"a {obj.kind.lower()} named {obj.name!r} already exists")
    row = OadrObjectRow(id=obj.id, targets="[]", body="{}", created_at=0, modified_at=0, kind="")
    _copy_into(row, obj)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a {obj.kind.lower()} named {obj.name!r} already exists") from exc
    return _object(row)


async def replace(session: Session, obj: StoredObject) -> StoredObject:
    """Overwrite a live object (same id); unique names are checked as on insert."""
    if await _unique_taken(session, obj):
        raise Conflict(f"a {obj.kind.lower()} named {obj.name!r} already exists")
    row = (await session.scalars(select(OadrObjectRow).where(OadrObjectRow.id == obj.id))).one()
    _copy_into(row, obj)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a {obj.kind.lower()} named {obj.name!r} already exists") from exc
    return _object(row)


async def mark_deleted(session: Session, object_ids: Sequence[str], now: float) -> None:
    """Remove objects from the OpenADR view; rows stay as history, names become free."""
    for row in await session.scalars(
        select(OadrObjectRow).where(col(OadrObjectRow.id).in_(list(object_ids)))
    ):
        row.deleted_at = now
        row.unique_key = None


async def get(
    session: Session, kind: str, object_id: str, *, lock: bool = False
) -> StoredObject | None:
    query = select(OadrObjectRow).where(
        col(OadrObjectRow.id) == object_id,
        col(OadrObjectRow.kind) == kind,
        col(OadrObjectRow.deleted_at).is_(None),
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await session.scalars(query)).first()
    return None if row is None else _object(row)


async def query(
    session: Session,
    kind: str,
    *,
    program_id: str | None = None,
    event_id: str | None = None,
    client_ids: Sequence[str] | None = None,
    ven_ids: Sequence[str] | None = None,
    name: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[StoredObject]:
    """Live objects of one kind, in creation order, filtered on the indexed columns."""
    stmt = select(OadrObjectRow).where(
        col(OadrObjectRow.kind) == kind, col(OadrObjectRow.deleted_at).is_(None)
    )
    if program_id is not None:
        stmt = stmt.where(col(OadrObjectRow.program_id) == program_id)
    if event_id is not None:
        stmt = stmt.where(col(OadrObjectRow.event_id) == event_id)
    if client_ids is not None:
        stmt = stmt.where(col(OadrObjectRow.client_id).in_(list(client_ids)))
    if ven_ids is not None:
        stmt = stmt.where(col(OadrObjectRow.ven_id).in_(list(ven_ids)))
    if name is not None:
        stmt = stmt.where(col(OadrObjectRow.name) == name)
    stmt = stmt.order_by(col(OadrObjectRow.seq))
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_object(r) for r in await session.scalars(stmt)]


# ---- clients ----------------------------------------------------------------------
async def create_client(store: Store, client: VtnClient) -> VtnClient:
    try:
        async with store.transaction() as s:
            s.add(
                VtnClientRow(
                    name=client.name,
                    client_id=client.client_id,
                    secret_hash=client.secret_hash,
                    role=client.role,
                    scopes=json.dumps(list(client.scopes)),
                    created_at=client.created_at,
                )
            )
            await s.flush()
    except IntegrityError as exc:
        raise Conflict(f"a client named {client.name!r} already exists") from exc
    return client


async def list_clients(store: Store) -> list[VtnClient]:
    async with store.transaction() as s:
        rows = await s.scalars(select(VtnClientRow).order_by(col(VtnClientRow.id)))
        return [_client(r) for r in rows]


async def get_client(store: Store, client_id: str) -> VtnClient | None:
    async with store.transaction() as s:
        query = select(VtnClientRow).where(col(VtnClientRow.client_id) == client_id)
        row = (await s.scalars(query)).first()
        return None if row is None else _client(row)


async def delete_client(session: Session, name: str) -> str | None:
    """Remove the client of this name; answers its client_id (None: there was none)."""
    query = select(VtnClientRow).where(col(VtnClientRow.name) == name)
    row = (await session.scalars(query)).first()
    if row is None:
        return None
    await session.execute(sa_delete(VtnClientRow).where(col(VtnClientRow.name) == name))
    return row.client_id
