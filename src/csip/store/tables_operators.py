"""Tables of the console's operators (issue 13 item 2).

* ``operator``: an account, its role, its password hash (argon2id, with its own salt and
  parameters in the string) and its lockout state.
* ``operator_session``: a logged-in browser by the sha256 of its cookie token (a stolen
  database copy holds no usable cookie), with its CSRF token and expiry. In the database, not
  in memory, so sessions survive a restart and hold across workers.
* ``audit_log``: every change an operator (or the admin API) made, with before and after.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, Text
from sqlmodel import Field, SQLModel


class OperatorRow(SQLModel, table=True):
    __tablename__ = "operator"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=16)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    failed_logins: int = 0
    locked_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class OperatorSessionRow(SQLModel, table=True):
    __tablename__ = "operator_session"

    token_hash: str = Field(max_length=64, primary_key=True)
    operator_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("operator.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    csrf: str = Field(max_length=64)
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    operator: str = Field(max_length=64, index=True)
    action: str = Field(max_length=64)
    target: str = Field(max_length=200)
    #: JSON of the object before and after the change (null: it did not exist / was removed)
    before: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    after: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
