"""The outbox table: notifications written with the change that causes them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


class OutboxRow(SQLModel, table=True):
    """One message to deliver (a webhook POST, an MQTT publish, a 2030.5 notification).

    Rows are inserted in the writer's transaction, so a crash never loses or invents one; the
    worker marks them delivered or gives up after the configured attempts, and keeps the row
    either way so what happened can be inspected.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "delivered_at", "failed_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    target: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_type: str = Field(max_length=128)
    attempts: int = 0
    next_attempt_at: float = Field(sa_column=Column(Float, nullable=False))
    created_at: float = Field(sa_column=Column(Float, nullable=False))
    delivered_at: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    failed_at: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: Groups rows of one change (for tracing); not interpreted by the worker.
    origin: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
