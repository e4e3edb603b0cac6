"""Tables of the DER function set: groups (FSAs), programs, controls, defaults, curves, responses.

JSON columns hold DERControlBase exactly as the utility gave it (values with multipliers).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel


def _fk(target: str, ondelete: str = "CASCADE", nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True)


class DerGroupRow(SQLModel, table=True):
    __tablename__ = "der_group"
    __table_args__ = (Index("ix_der_group_target", "target", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    description: str = Field(max_length=32)
    level: str | None = Field(default=None, max_length=32)
    parent_id: int | None = Field(default=None, sa_column=_fk("der_group.id", nullable=True))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: Deleted through the admin API: out of every list, kept as history (migration 0008).
    deleted_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    #: The group's OpenADR 3.1 target name, unique: BL targets reach the group by it (0009).
    target: str | None = Field(default=None, max_length=128)


class DerGroupMemberRow(SQLModel, table=True):
    __tablename__ = "der_group_member"

    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("der_group.id", ondelete="CASCADE"), primary_key=True)
    )
    end_device_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("end_device.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class DerProgramRow(SQLModel, table=True):
    __tablename__ = "der_program"

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    group_id: int = Field(sa_column=_fk("der_group.id"))
    description: str = Field(max_length=32)
    primacy: int
    version: int = 0
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: Deleted through the admin API: out of every list, kept as history (migration 0008).
    deleted_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class DerControlRow(SQLModel, table=True):
    __tablename__ = "der_control"

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    program_id: int = Field(sa_column=_fk("der_program.id"))
    description: str = Field(max_length=32)
    creation_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    start: int = Field(sa_column=Column(BigInteger, nullable=False))
    duration: int = Field(sa_column=Column(BigInteger, nullable=False))
    base: str = Field(sa_column=Column(Text, nullable=False))
    randomize_start: int | None = None
    randomize_duration: int | None = None
    response_required: str | None = Field(default=None, max_length=2)
    cancelled_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cancel_randomized: bool = False
    version: int = 0


class DerDefaultControlRow(SQLModel, table=True):
    __tablename__ = "der_default_control"

    program_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("der_program.id", ondelete="CASCADE"), primary_key=True
        )
    )
    mrid: str = Field(max_length=32)
    base: str = Field(sa_column=Column(Text, nullable=False))
    settings: str = Field(sa_column=Column(Text, nullable=False))
    version: int = 0
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class DerCurveRow(SQLModel, table=True):
    __tablename__ = "der_curve"

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    program_id: int = Field(sa_column=_fk("der_program.id"))
    curve_type: int
    points: str = Field(sa_column=Column(Text, nullable=False))
    x_multiplier: int
    y_multiplier: int
    y_ref_type: int
    creation_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    description: str = Field(default="", max_length=32)
    extras: str = Field(sa_column=Column(Text, nullable=False))


class DerResponseRow(SQLModel, table=True):
    """A DERControlResponse a device posted to a control's replyTo."""

    __tablename__ = "der_response"

    id: int | None = Field(default=None, primary_key=True)
    control_id: int = Field(sa_column=_fk("der_control.id"))
    end_device_id: int = Field(sa_column=_fk("end_device.id"))
    lfdi: str = Field(max_length=40)
    status: int
    created_date_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    received_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class Sep2SubscriptionRow(SQLModel, table=True):
    """A 2030.5 Subscription a client POSTed to its EndDevice's SubscriptionList."""

    __tablename__ = "sep2_subscription"

    id: int | None = Field(default=None, primary_key=True)
    end_device_id: int = Field(sa_column=_fk("end_device.id"))
    subscribed_resource: str = Field(max_length=255, index=True)
    notification_uri: str = Field(sa_column=Column(Text, nullable=False))
    limit: int
    encoding: int = 0
    level: str = Field(default="", max_length=16)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
