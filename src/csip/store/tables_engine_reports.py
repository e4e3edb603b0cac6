"""The program engine's own reports (issue 10 item 5): one row per event csip reports on.

The row is what several workers claim (SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL) so
only one of them writes a given update of the report, and it remembers what the report last
said (`digest`), so a refresh that finds nothing new writes nothing and notifies nobody.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel


class EngineReportRow(SQLModel, table=True):
    __tablename__ = "engine_report"

    event_id: str = Field(max_length=64, primary_key=True)
    #: The OpenADR report object (oadr_object.id), None until the first interval begins.
    report_id: str | None = Field(default=None, max_length=64)
    #: A stable text of the report's resources as last written ("" never written).
    digest: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    updated_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
