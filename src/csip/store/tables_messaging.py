"""Tables of the Messaging function set: one MessagingProgram per group, its TextMessages.

TextMessages are events: never deleted, only cancelled (cancelled_at). `source` says who wrote
a message (the program engine's "event:<id>") so its messages can be found and cancelled
together; it never reaches the wire.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Text
from sqlmodel import Field, SQLModel


class MessagingProgramRow(SQLModel, table=True):
    __tablename__ = "messaging_program"

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    #: One per group: made on the group's first message.
    group_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("der_group.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
            index=True,
        )
    )
    description: str = Field(max_length=32)
    locale: str = Field(max_length=42)
    primacy: int
    version: int = 0
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class TextMessageRow(SQLModel, table=True):
    __tablename__ = "text_message"

    id: int | None = Field(default=None, primary_key=True)
    mrid: str = Field(max_length=32)
    program_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("messaging_program.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    creation_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    start: int = Field(sa_column=Column(BigInteger, nullable=False))
    duration: int = Field(sa_column=Column(BigInteger, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    priority: int
    originator: str | None = Field(default=None, max_length=20)
    cancelled_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    source: str | None = Field(
        default=None, sa_column=Column(String(128), nullable=True, index=True)
    )
