"""Tables of the metering mirror: MirrorUsagePoints, their MirrorMeterReadings (one
ReadingType each) and the Readings devices post. Everything hangs off the EndDevice with
ON DELETE CASCADE, so deleting a device (or all of them) takes its telemetry along."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


class MirrorUsagePointRow(SQLModel, table=True):
    """One per (EndDevice, mRID): a repeat POST of the same mRID updates it."""

    __tablename__ = "mirror_usage_point"
    __table_args__ = (UniqueConstraint("end_device_id", "mrid", name="uq_mup_device_mrid"),)

    id: int | None = Field(default=None, primary_key=True)
    end_device_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("end_device.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    mrid: str = Field(max_length=32)
    description: str | None = Field(default=None, max_length=32)
    role_flags: int
    service_category_kind: int
    status: int
    requested_post_rate: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class MirrorMeterReadingRow(SQLModel, table=True):
    """A MirrorMeterReading and its ReadingType (fixed once readings of it are stored)."""

    __tablename__ = "mirror_meter_reading"
    __table_args__ = (UniqueConstraint("mup_id", "mrid", name="uq_mmr_mup_mrid"),)

    id: int | None = Field(default=None, primary_key=True)
    mup_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("mirror_usage_point.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    mrid: str = Field(max_length=32)
    description: str | None = Field(default=None, max_length=32)
    uom: int
    power_of_ten_multiplier: int
    kind: int | None = None
    phase: int | None = None
    flow_direction: int | None = None
    data_qualifier: int | None = None
    accumulation_behaviour: int | None = None
    commodity: int | None = None
    interval_length: int | None = Field(default=None, sa_column=Column(BigInteger))


class ReadingRow(SQLModel, table=True):
    """One Reading exactly as posted: the integer value with its multiplier beside it."""

    __tablename__ = "reading"
    __table_args__ = (
        UniqueConstraint("mmr_id", "start", name="uq_reading_mmr_start"),
        Index("ix_reading_device_start", "end_device_id", "start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mmr_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("mirror_meter_reading.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    #: Denormalised for the admin view's per-device time window.
    end_device_id: int = Field(
        sa_column=Column(Integer, ForeignKey("end_device.id", ondelete="CASCADE"), nullable=False)
    )
    value: int = Field(sa_column=Column(BigInteger, nullable=False))
    power_of_ten_multiplier: int
    start: int = Field(sa_column=Column(BigInteger, nullable=False))
    duration: int | None = Field(default=None, sa_column=Column(BigInteger))
    quality_flags: int | None = None
    local_id: int | None = None
    received_at: int = Field(sa_column=Column(BigInteger, nullable=False))
