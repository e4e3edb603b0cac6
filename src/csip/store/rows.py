"""Rows as plain tuples, for the few reads that take a whole fleet's rows at once (capacity,
settlement). On SQLite the rows come straight from aiosqlite's cursor: SQLAlchemy's result
rows cost about as much again as SQLite's own work for 100,000 rows. Elsewhere (asyncpg)
SQLAlchemy's rows are thin already."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


def _compiled(conn: Any, query: Any) -> tuple[str, tuple[Any, ...]]:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    return str(compiled), tuple(params[k] for k in compiled.positiontup or ())


async def select_tuples(s: AsyncSession, query: Any) -> list[tuple[Any, ...]]:
    """Every row of a Core query, in the session's transaction."""
    return [row async for chunk in stream_tuples(s, query) for row in chunk]


async def stream_tuples(
    s: AsyncSession, query: Any, size: int = 50_000
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of a Core query in chunks of `size`, in the session's transaction: a reader
    works on one chunk while the rest wait in the database."""
    conn = await s.connection()
    if conn.dialect.name != "sqlite":
        result = await conn.stream(query)
        async for part in result.partitions(size):
            yield [tuple(r) for r in part]
        return
    sql, params = _compiled(conn, query)
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(sql, params)  # type: ignore[union-attr]
    try:
        while True:
            chunk = await cursor.fetchmany(size)
            if not chunk:
                return
            yield list(chunk)
    finally:
        await cursor.close()
