"""Tables of per-device dispatch (issue 12 items 3 and 4).

* ``dispatch_plan``: per event and group of a per-device program, the plan as last made or
  re-made: every interval's target, what the group could give, the shortfall, and per device
  the inputs and setpoints (JSON, the admin API's explanation), with the history of re-plans.
  It is also the row a worker claims (FOR UPDATE SKIP LOCKED) before re-planning.
* ``dispatch_control``: which DERControl of a device's own program carries which device's
  setpoint for which intervals of which event, so a re-plan supersedes exactly those, a
  delete cancels them, and settlement hears the opt-outs answered to them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel


class DispatchPlanRow(SQLModel, table=True):
    __tablename__ = "dispatch_plan"

    event_id: str = Field(max_length=64, primary_key=True)
    group_id: int = Field(sa_column=Column(Integer, primary_key=True))
    planned_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: End of the event's last interval: after it nothing is re-planned.
    ends_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: JSON: {"intervals": [...], "devices": {...}, "replans": [...]}
    plan: str = Field(sa_column=Column(Text, nullable=False))


class DispatchControlRow(SQLModel, table=True):
    __tablename__ = "dispatch_control"
    __table_args__ = (Index("ix_dispatch_control_event", "event_id", "device_id"),)

    control_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("der_control.id", ondelete="CASCADE"), primary_key=True
        )
    )
    event_id: str = Field(max_length=64)
    group_id: int
    device_id: int
    #: JSON list of the OpenADR interval ids the control carries.
    interval_ids: str = Field(sa_column=Column(Text, nullable=False))
