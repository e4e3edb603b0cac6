"""SQLModel tables. Alembic migrations under migrations/ create and evolve them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


class AggregatorRow(SQLModel, table=True):
    __tablename__ = "aggregator"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class ClientCertificateRow(SQLModel, table=True):
    """A certificate the utility knows by LFDI (attached to an aggregator, or disabled)."""

    __tablename__ = "client_certificate"

    lfdi: str = Field(primary_key=True, max_length=40)
    aggregator_id: int | None = Field(
        default=None, foreign_key="aggregator.id", index=True, ondelete="CASCADE"
    )
    enabled: bool = True
    expires_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class EndDeviceRow(SQLModel, table=True):
    __tablename__ = "end_device"
    #: An aggregator's EndDeviceList in page order (store.Store._page_fleet).
    __table_args__ = (Index("ix_end_device_fleet_page", "aggregator_id", "sfdi", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    lfdi: str = Field(max_length=40, unique=True, index=True)
    sfdi: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    changed_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    registered_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    pin: int
    enabled: bool = True
    device_category: str | None = Field(default=None, max_length=8)
    post_rate: int | None = None
    aggregator_id: int | None = Field(
        default=None, foreign_key="aggregator.id", index=True, ondelete="SET NULL"
    )
    in_band: bool = False
    #: The EndDevice of an aggregator's own certificate (CSIP-AUS aggregator model).
    aggregator_self: bool = False


class DeviceDocumentRow(SQLModel, table=True):
    """A document a device PUTs under its EndDevice (DeviceInformation, DeviceStatus, ...).

    Stored as the validated XML it sent (href rewritten), so values come back exactly.
    """

    __tablename__ = "device_document"

    end_device_id: int = Field(foreign_key="end_device.id", primary_key=True, ondelete="CASCADE")
    kind: str = Field(primary_key=True, max_length=16)
    xml: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class SettingRow(SQLModel, table=True):
    """Server-wide values the utility changes at run time (poll rates, admin token ...)."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))
