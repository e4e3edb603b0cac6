"""OpenADR 3 VTN tables: one table for the six object kinds, one for OAuth2 clients.

The six kinds share their shape (id, timestamps, owner, targets, a JSON body), and every
query the VTN makes filters on a handful of columns (kind, program, event, client, ven,
name); one table keeps the ordering stable (``seq``) and the code small. Deleted objects keep
their row (``deleted_at``): DELETE removes them from the OpenADR view, not from history.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Text
from sqlmodel import Field, SQLModel


class OadrObjectRow(SQLModel, table=True):
    __tablename__ = "oadr_object"
    __table_args__ = (
        Index("ix_oadr_object_unique_key", "kind", "unique_key", unique=True),
        Index("ix_oadr_object_kind_program", "kind", "program_id"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True, index=True)
    kind: str = Field(max_length=16)
    program_id: str | None = Field(default=None, max_length=64)
    event_id: str | None = Field(default=None, max_length=64, index=True)
    client_id: str | None = Field(default=None, max_length=128, index=True)
    ven_id: str | None = Field(default=None, max_length=64, index=True)
    name: str | None = Field(default=None, max_length=128)
    #: programName, venName, venID/resourceName while live; NULL once deleted.
    unique_key: str | None = Field(default=None, max_length=200)
    targets: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: float = Field(sa_column=Column(Float, nullable=False))
    modified_at: float = Field(sa_column=Column(Float, nullable=False))
    deleted_at: float | None = Field(default=None, sa_column=Column(Float, nullable=True))


class VtnClientRow(SQLModel, table=True):
    """An OAuth2 client of the VTN (a BL or a VEN); the secret is stored as a scrypt hash."""

    __tablename__ = "vtn_client"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    client_id: str = Field(max_length=64, unique=True, index=True)
    secret_hash: str = Field(max_length=256)
    role: str = Field(max_length=8)
    scopes: str = Field(sa_column=Column(Text, nullable=False))
    created_at: float = Field(sa_column=Column(Float, nullable=False))
