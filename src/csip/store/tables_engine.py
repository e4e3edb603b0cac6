"""Tables of the program engine: what joins an OpenADR program to the 2030.5 groups.

* ``engine_program``: the utility's per-program choices (primacy of its DERPrograms, the
  SIMPLE level table, the notice wording), keyed by the OpenADR program's id.
* ``engine_enrollment``: one 2030.5 group in one program, with the DERProgram that carries
  the program's controls for that group.
* ``engine_control``: which DERControls (and TextMessages) an event produced for a group, so
  an update supersedes exactly those and a delete cancels exactly those.
* ``engine_mapping``: per event and group, what the group got and what was not mapped (with
  the reason), as the admin API shows it.
* ``engine_forced``: events called against the program's terms with `force`, recorded.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel


class EngineProgramRow(SQLModel, table=True):
    __tablename__ = "engine_program"

    program_id: str = Field(max_length=64, primary_key=True)
    primacy: int
    #: JSON: {"0": {DERControlBase}, "1": ...}
    simple_levels: str = Field(sa_column=Column(Text, nullable=False, default="{}"))
    notice_before: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    notice_after: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    notice_lead: int = 3600
    originator: str = Field(default="utility", max_length=20)
    #: JSON: the program's terms (reserve floor, event limits, notice), see ProgramTerms.
    terms: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    #: "group" (one control per group) or "per-device" (services/dispatch.py).
    dispatch: str = Field(default="group", max_length=16)


class EngineEnrollmentRow(SQLModel, table=True):
    __tablename__ = "engine_enrollment"
    __table_args__ = (
        Index("ix_engine_enrollment_program_group", "program_id", "group_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    program_id: str = Field(max_length=64, index=True)
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("der_group.id", ondelete="CASCADE"), nullable=False)
    )
    der_program_id: int = Field(
        sa_column=Column(Integer, ForeignKey("der_program.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class EngineControlRow(SQLModel, table=True):
    __tablename__ = "engine_control"
    __table_args__ = (Index("ix_engine_control_event", "event_id", "group_id"),)

    control_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("der_control.id", ondelete="CASCADE"), primary_key=True
        )
    )
    event_id: str = Field(max_length=64)
    group_id: int
    #: JSON list of the OpenADR interval ids the control carries.
    interval_ids: str = Field(sa_column=Column(Text, nullable=False))


class EngineMappingRow(SQLModel, table=True):
    __tablename__ = "engine_mapping"

    event_id: str = Field(max_length=64, primary_key=True)
    group_id: int = Field(sa_column=Column(Integer, primary_key=True))
    planned_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: JSON list of {"payloadType", "reason"}.
    unmapped: str = Field(sa_column=Column(Text, nullable=False))
    messages: int = 0


class EngineForcedRow(SQLModel, table=True):
    """An event the utility called although it broke the program's terms (`force`): when,
    and which terms, for the record."""

    __tablename__ = "engine_forced"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, index=True)
    forced_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: JSON list of the broken terms, as the 400 would have named them.
    broken: str = Field(sa_column=Column(Text, nullable=False))
