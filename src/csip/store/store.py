"""The store: async SQLModel sessions over SQLite (WAL) or PostgreSQL, returning domain objects.

Writes are functions that take the session of the caller's unit of work (store.uow), so a use
case commits whole or changes nothing. Each `Store` method is one transaction of its own: the
read paths outside a unit of work, the CLI, and tests use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, func, or_, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import col, delete, select

from csip.domain.devices import Aggregator, ClientCertificate, EndDevice
from csip.errors import Conflict, NotFound
from csip.store.tables import (
    AggregatorRow,
    ClientCertificateRow,
    DeviceDocumentRow,
    EndDeviceRow,
    SettingRow,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from csip.store.uow import Effects, UnitOfWork

_ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
#: PostgreSQL advisory lock held while migrating ("csipmig").
_MIGRATION_LOCK = 0x63_73_69_70_6D_69_67
_DECLARATION = b"<?xml"


def stored_xml(raw: bytes) -> bytes:
    """A stored device document as served: rows written before csip stopped sending an XML
    declaration (issue 9 item 1) still carry one; it is cut here rather than migrated."""
    data = bytes(raw)
    if data.startswith(_DECLARATION):
        end = data.find(b"?>")
        if end != -1:
            data = data[end + 2 :].lstrip()
    return data


_WAL_SWITCH_SECONDS = 5.0


def _end_device(row: EndDeviceRow) -> EndDevice:
    assert row.id is not None
    return EndDevice(
        id=row.id,
        lfdi=row.lfdi,
        sfdi=row.sfdi,
        changed_time=row.changed_time,
        registered_at=row.registered_at,
        pin=row.pin,
        enabled=row.enabled,
        device_category=row.device_category,
        post_rate=row.post_rate,
        aggregator_id=row.aggregator_id,
        in_band=row.in_band,
        aggregator_self=row.aggregator_self,
    )


def _aggregator(row: AggregatorRow) -> Aggregator:
    assert row.id is not None
    return Aggregator(row.id, row.name, row.created_at)


def _certificate(row: ClientCertificateRow) -> ClientCertificate:
    return ClientCertificate(row.lfdi, row.aggregator_id, row.enabled, row.expires_at)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching a new file to WAL needs the lock another process may hold
    cursor.execute("PRAGMA busy_timeout=5000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Put the file in WAL mode, taking turns with anyone opening the same new file.

    Two connections that open one brand-new file together both read it in rollback-journal
    mode and both ask for the exclusive lock the switch needs; SQLite refuses one of them at
    once (a deadlock, so the busy timeout does not apply). The refused one waits a moment and
    asks again: by then the file is in WAL mode and the pragma only reads it. This blocks the
    event loop for those few milliseconds, and only while a fresh database is being created.
    """
    deadline = time.monotonic() + _WAL_SWITCH_SECONDS
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


# ---- session functions (store.uow): the caller's unit of work owns the transaction ----------
async def select_settings(s: AsyncSession, prefix: str) -> dict[str, Any]:
    rows = await s.scalars(select(SettingRow).where(col(SettingRow.key).startswith(prefix)))
    return {r.key[len(prefix) :]: json.loads(r.value) for r in rows}


async def update_settings(s: AsyncSession, values: dict[str, Any]) -> None:
    """Create or replace each key."""
    for key, value in values.items():
        row = await s.get(SettingRow, key)
        if row is None:
            s.add(SettingRow(key=key, value=json.dumps(value)))
        else:
            row.value = json.dumps(value)
    await s.flush()


async def select_aggregator(s: AsyncSession, name: str) -> Aggregator | None:
    row = (await s.scalars(select(AggregatorRow).where(AggregatorRow.name == name))).first()
    return None if row is None else _aggregator(row)


async def delete_aggregator(s: AsyncSession, aggregator_id: int) -> None:
    await s.execute(
        delete(ClientCertificateRow).where(col(ClientCertificateRow.aggregator_id) == aggregator_id)
    )
    await s.execute(delete(AggregatorRow).where(col(AggregatorRow.id) == aggregator_id))


async def select_certificate(s: AsyncSession, lfdi: str) -> ClientCertificate | None:
    row = await s.get(ClientCertificateRow, lfdi)
    return None if row is None else _certificate(row)


async def select_certificates(
    s: AsyncSession, aggregator_id: int | None = None
) -> list[ClientCertificate]:
    query = select(ClientCertificateRow).order_by(col(ClientCertificateRow.lfdi))
    if aggregator_id is not None:
        query = query.where(col(ClientCertificateRow.aggregator_id) == aggregator_id)
    return [_certificate(r) for r in await s.scalars(query)]


async def update_certificate(s: AsyncSession, cert: ClientCertificate) -> None:
    """Create or replace the record of one certificate."""
    row = await s.get(ClientCertificateRow, cert.lfdi)
    if row is None:
        s.add(
            ClientCertificateRow(
                lfdi=cert.lfdi,
                aggregator_id=cert.aggregator_id,
                enabled=cert.enabled,
                expires_at=cert.expires_at,
            )
        )
    else:
        row.aggregator_id = cert.aggregator_id
        row.enabled = cert.enabled
        row.expires_at = cert.expires_at
    await s.flush()


async def delete_certificate(s: AsyncSession, lfdi: str) -> None:
    await s.execute(delete(ClientCertificateRow).where(col(ClientCertificateRow.lfdi) == lfdi))


async def insert_end_devices(s: AsyncSession, devices: Sequence[EndDevice]) -> list[EndDevice]:
    """Insert devices (id ignored); an LFDI clash raises Conflict (the unit rolls back)."""
    rows = [
        EndDeviceRow(
            lfdi=d.lfdi,
            sfdi=d.sfdi,
            changed_time=d.changed_time,
            registered_at=d.registered_at,
            pin=d.pin,
            enabled=d.enabled,
            device_category=d.device_category,
            post_rate=d.post_rate,
            aggregator_id=d.aggregator_id,
            in_band=d.in_band,
            aggregator_self=d.aggregator_self,
        )
        for d in devices
    ]
    s.add_all(rows)
    try:
        await s.flush()
    except IntegrityError as exc:
        raise Conflict("an EndDevice with that lFDI is already registered") from exc
    return [_end_device(r) for r in rows]


async def select_end_device(s: AsyncSession, device_id: int) -> EndDevice | None:
    row = await s.get(EndDeviceRow, device_id)
    return None if row is None else _end_device(row)


async def select_end_device_by_lfdi(s: AsyncSession, lfdi: str) -> EndDevice | None:
    row = (await s.scalars(select(EndDeviceRow).where(EndDeviceRow.lfdi == lfdi))).first()
    return None if row is None else _end_device(row)


async def select_end_devices_by_lfdi(s: AsyncSession, lfdis: Sequence[str]) -> dict[str, EndDevice]:
    found: dict[str, EndDevice] = {}
    for start in range(0, len(lfdis), 500):
        chunk = list(lfdis[start : start + 500])
        rows = await s.scalars(select(EndDeviceRow).where(col(EndDeviceRow.lfdi).in_(chunk)))
        found.update((r.lfdi, _end_device(r)) for r in rows)
    return found


async def select_end_devices(s: AsyncSession, device_ids: Sequence[int]) -> list[EndDevice]:
    """These devices (the ones that exist), in id order; looked up 500 at a time."""
    ids = sorted(set(device_ids))
    found: list[EndDevice] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = select(EndDeviceRow).where(col(EndDeviceRow.id).in_(chunk))
        rows = await s.scalars(query.order_by(col(EndDeviceRow.id)))
        found += [_end_device(r) for r in rows]
    return found


async def update_end_device(s: AsyncSession, device_id: int, **values: Any) -> EndDevice:
    row = await s.get(EndDeviceRow, device_id)
    if row is None:
        raise NotFound(f"EndDevice {device_id} does not exist")
    for name, value in values.items():
        setattr(row, name, value)
    await s.flush()
    return _end_device(row)


async def delete_end_device(s: AsyncSession, device_id: int) -> bool:
    """Delete a device and all under it."""
    await s.execute(
        delete(DeviceDocumentRow).where(col(DeviceDocumentRow.end_device_id) == device_id)
    )
    result = await s.execute(delete(EndDeviceRow).where(col(EndDeviceRow.id) == device_id))
    return bool(getattr(result, "rowcount", 0))


async def delete_all_end_devices(s: AsyncSession) -> int:
    await s.execute(delete(DeviceDocumentRow))
    result = await s.execute(delete(EndDeviceRow))
    return int(getattr(result, "rowcount", 0))


async def update_document(s: AsyncSession, device_id: int, kind: str, xml: bytes, now: int) -> bool:
    """Create or replace a document a device PUT under its EndDevice; True when it did not
    exist before (the PUT created it: 201 + Location)."""
    if await s.get(EndDeviceRow, device_id) is None:
        raise NotFound(f"EndDevice {device_id} does not exist")
    row = await s.get(DeviceDocumentRow, (device_id, kind))
    created = row is None
    if row is None:
        s.add(DeviceDocumentRow(end_device_id=device_id, kind=kind, xml=xml, updated_at=now))
    else:
        row.xml = xml
        row.updated_at = now
    await s.flush()
    return created


class Store:
    """Persistence for csip; the only class outside store/ that knows a database exists."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Sessions for store functions that take one (store.uow opens them).
        self.sessions = self._sessions
        self._write_lock = asyncio.Lock()

    def write_turn(self) -> AbstractAsyncContextManager[object]:
        """A unit of work's turn to write: on SQLite (one writer at a time) the units of this
        process queue here, in order, instead of racing for the file lock; on PostgreSQL
        (row locks, many writers) no wait."""
        if self.dialect == "sqlite":
            return self._write_lock
        return contextlib.nullcontext()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to run every start)."""
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)

        def upgrade(connection: Connection) -> None:
            config = Config(str(_ALEMBIC_INI))
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")  # branches (DER, OpenADR) may coexist

        async with self.engine.begin() as connection:
            # Processes starting together on a fresh database (csip serve and csip admin
            # token, several workers or hosts) migrate one at a time: the others wait for the
            # lock, then find the schema current.
            if self.dialect == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            await connection.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends, rolls back if it raises.

        For reads and for the outbox's own bookkeeping; a use case that changes what clients
        see writes through `unit_of_work` instead, so its change, its notifications and its
        change-log row commit together.
        """
        async with self._sessions() as session, session.begin():
            yield session

    _tx = transaction

    def unit_of_work(self, effects: Effects) -> AbstractAsyncContextManager[UnitOfWork]:
        """One use case's transaction with the changes it records (store.uow)."""
        from csip.store.uow import unit_of_work

        return unit_of_work(self, effects)

    # ---- settings --------------------------------------------------------
    async def get_setting(self, key: str) -> Any:
        async with self._tx() as s:
            row = await s.get(SettingRow, key)
            return None if row is None else json.loads(row.value)

    async def get_settings(self, prefix: str) -> dict[str, Any]:
        async with self._tx() as s:
            return await select_settings(s, prefix)

    async def set_settings(self, values: dict[str, Any]) -> None:
        async with self._tx() as s:
            await update_settings(s, values)

    # ---- aggregators and certificates -------------------------------------
    async def create_aggregator(self, name: str, now: int) -> Aggregator:
        try:
            async with self._tx() as s:
                row = AggregatorRow(name=name, created_at=now)
                s.add(row)
                await s.flush()
                return _aggregator(row)
        except IntegrityError as exc:
            raise Conflict(f"an aggregator named {name!r} already exists") from exc

    async def get_aggregator(self, name: str) -> Aggregator | None:
        async with self._tx() as s:
            return await select_aggregator(s, name)

    async def list_aggregators(self) -> list[Aggregator]:
        async with self._tx() as s:
            rows = await s.scalars(select(AggregatorRow).order_by(col(AggregatorRow.id)))
            return [_aggregator(r) for r in rows]

    async def delete_aggregator(self, aggregator_id: int) -> None:
        async with self._tx() as s:
            await delete_aggregator(s, aggregator_id)

    async def get_certificate(self, lfdi: str) -> ClientCertificate | None:
        async with self._tx() as s:
            return await select_certificate(s, lfdi)

    async def list_certificates(self, aggregator_id: int | None = None) -> list[ClientCertificate]:
        async with self._tx() as s:
            return await select_certificates(s, aggregator_id)

    async def put_certificate(self, cert: ClientCertificate) -> None:
        async with self._tx() as s:
            await update_certificate(s, cert)

    async def delete_certificate(self, lfdi: str) -> None:
        async with self._tx() as s:
            await delete_certificate(s, lfdi)

    # ---- end devices --------------------------------------------------------
    async def create_end_devices(self, devices: Sequence[EndDevice]) -> list[EndDevice]:
        """Insert devices (id ignored) in one transaction; any LFDI clash rolls back all."""
        try:
            async with self._tx() as s:
                return await insert_end_devices(s, devices)
        except IntegrityError as exc:
            raise Conflict("an EndDevice with that lFDI is already registered") from exc

    async def get_end_device(self, device_id: int) -> EndDevice | None:
        async with self._tx() as s:
            return await select_end_device(s, device_id)

    async def end_devices_by_lfdi(self, lfdis: Sequence[str]) -> dict[str, EndDevice]:
        async with self._tx() as s:
            return await select_end_devices_by_lfdi(s, lfdis)

    async def get_end_device_by_lfdi(self, lfdi: str) -> EndDevice | None:
        async with self._tx() as s:
            return await select_end_device_by_lfdi(s, lfdi)

    async def page_end_devices(
        self,
        *,
        lfdi: str | None = None,
        aggregator_id: int | None = None,
        start: int = 0,
        limit: int = 100,
    ) -> tuple[int, list[EndDevice]]:
        """(all, page) of the EndDevices one client sees, in stable sFDI then id order.

        lfdi alone: that one device; aggregator_id: the ones it manages plus lfdi's own;
        neither: every device (admin view).
        """
        if aggregator_id is not None and lfdi is not None:
            return await self._page_fleet(lfdi, aggregator_id, start, limit)
        conditions = []
        if aggregator_id is not None:
            conditions.append(col(EndDeviceRow.aggregator_id) == aggregator_id)
        if lfdi is not None:
            conditions.append(col(EndDeviceRow.lfdi) == lfdi)
        where = or_(*conditions) if conditions else None
        async with self._tx() as s:
            count_q = select(func.count()).select_from(EndDeviceRow)
            page_q = select(EndDeviceRow).order_by(col(EndDeviceRow.sfdi), col(EndDeviceRow.id))
            if where is not None:
                count_q = count_q.where(where)
                page_q = page_q.where(where)
            total = (await s.execute(count_q)).scalar_one()
            if not limit:
                return int(total), []
            rows = await s.scalars(page_q.offset(start).limit(limit))
            return int(total), [_end_device(r) for r in rows]

    async def _page_fleet(
        self, lfdi: str, aggregator_id: int, start: int, limit: int
    ) -> tuple[int, list[EndDevice]]:
        """An aggregator's EndDeviceList: its own certificate's EndDevice first (the CSIP-AUS
        aggregator model), then the devices it manages in sFDI, id order.

        Every query reads the index on (aggregator_id, sfdi, id) alone: the own EndDevice,
        when it is among the managed ones, is stepped over by its rank in that order rather
        than filtered by LFDI (a filter on a column outside the index made SQLite read every
        row up to the page: ~110 ms a page with 100,000 devices, ~4 ms without)."""
        fleet = col(EndDeviceRow.aggregator_id) == aggregator_id
        order = (col(EndDeviceRow.sfdi), col(EndDeviceRow.id))
        async with self._tx() as s:
            own = (
                await s.scalars(select(EndDeviceRow).where(col(EndDeviceRow.lfdi) == lfdi))
            ).first()
            count_q = select(func.count()).select_from(EndDeviceRow).where(fleet)
            managed = int((await s.execute(count_q)).scalar_one())
            inside = own is not None and own.aggregator_id == aggregator_id
            mine = 0 if own is None else 1
            total = managed - (1 if inside else 0) + mine
            if not limit:
                return total, []
            found = [own] if own is not None and start == 0 else []
            skip = max(0, start - mine)
            take = limit - len(found)
            if take > 0:
                extra = 0
                if inside:
                    assert own is not None
                    before = tuple_(*order) < tuple_(own.sfdi, own.id)
                    rank_q = select(func.count()).select_from(EndDeviceRow).where(fleet, before)
                    rank = int((await s.execute(rank_q)).scalar_one())
                    if rank < skip:
                        skip += 1  # the own EndDevice is on an earlier page of the index
                    else:
                        extra = 1  # it may be on this one: read one more, leave it out
                page_q = select(EndDeviceRow).where(fleet).order_by(*order)
                rows = await s.scalars(page_q.offset(skip).limit(take + extra))
                found += [r for r in rows if r.lfdi != lfdi][:take]
            return total, [_end_device(r) for r in found if r is not None]

    async def update_end_device(self, device_id: int, **values: Any) -> EndDevice:
        async with self._tx() as s:
            return await update_end_device(s, device_id, **values)

    async def delete_end_device(self, device_id: int) -> bool:
        async with self._tx() as s:
            return await delete_end_device(s, device_id)

    async def delete_all_end_devices(self) -> int:
        async with self._tx() as s:
            return await delete_all_end_devices(s)

    # ---- documents a device PUTs ---------------------------------------------
    async def get_document(self, device_id: int, kind: str) -> bytes | None:
        async with self._tx() as s:
            row = await s.get(DeviceDocumentRow, (device_id, kind))
            return None if row is None else stored_xml(row.xml)

    async def put_document(self, device_id: int, kind: str, xml: bytes, now: int) -> bool:
        """Store (or replace) a device's document; True when it did not exist before."""
        async with self._tx() as s:
            return await update_document(s, device_id, kind, xml, now)
