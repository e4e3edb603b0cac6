"""Tables of what devices post beyond their single documents: LogEvents, a list that grows.

DERCapability, DERSettings, DERStatus, DERAvailability and ConnectionPoint are single
documents per device and live in ``device_document`` (see tables.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, LargeBinary
from sqlmodel import Field, SQLModel


class LogEventRow(SQLModel, table=True):
    """One LogEvent a device POSTed: the columns the list is ordered and read by, and the
    validated XML exactly as sent (href set), so values come back exactly."""

    __tablename__ = "log_event"
    __table_args__ = (
        Index("ix_log_event_device_order", "end_device_id", "created_date_time", "log_event_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    end_device_id: int = Field(
        sa_column=Column(Integer, ForeignKey("end_device.id", ondelete="CASCADE"), nullable=False)
    )
    created_date_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    log_event_id: int
    log_event_code: int
    function_set: int
    profile_id: int
    log_event_pen: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    xml: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
