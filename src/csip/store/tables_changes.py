"""The change log: one row per committed unit of work that changed something cached."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, Text
from sqlmodel import Field, SQLModel

#: BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class ChangeLogRow(SQLModel, table=True):
    """What a unit of work invalidated, so every worker can replay it in order.

    PostgreSQL NOTIFY carries only `seq` (a payload is capped below 8,000 bytes; a bulk
    membership change is far bigger); workers read the rows after the last one they applied,
    so a NOTIFY lost with a dropped connection is caught up on reconnect.
    """

    __tablename__ = "change_log"

    seq: int | None = Field(
        default=None, sa_column=Column(_SEQ, primary_key=True, autoincrement=True)
    )
    #: The worker that committed it (it applied the change itself, after commit).
    origin: str = Field(max_length=32)
    #: Wall-clock seconds (not the lab clock, which tests move): pruning age.
    created_at: float = Field(sa_column=Column(Float, nullable=False))
    #: The invalidation tags, one per line.
    payload: str = Field(sa_column=Column(Text, nullable=False))
