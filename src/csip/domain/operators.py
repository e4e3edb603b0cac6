"""Operators of the console: who they are, what their role lets them do, when a run of
wrong passwords locks an account, and what an audit entry records.

Pure: times are epoch seconds passed in. Password hashing and session tokens are the
service's (services/operators.py): they need a hashing library and randomness.

* Two roles. A **viewer** reads every page and changes nothing (each change answers 403); an
  **operator** may also create, update and cancel events.
* **Lockout**: after `MAX_FAILURES` wrong passwords in a row an account is locked for
  `LOCKOUT_SECONDS`; while locked even the right password is refused (so guessing cannot
  go on at one try per lock), and a success resets the count.
* A **session** lasts `SESSION_SECONDS` from login; it carries its own CSRF token, which
  every form of the console posts back.
* An **audit entry** says who changed what, when, and the object before and after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

VIEWER = "viewer"
OPERATOR = "operator"
ROLES = (VIEWER, OPERATOR)
#: Wrong passwords in a row that lock an account, and for how long.
MAX_FAILURES = 5
LOCKOUT_SECONDS = 900
#: How long a console session lasts from login.
SESSION_SECONDS = 8 * 3600
#: Shortest password `csip operators add` accepts.
MIN_PASSWORD = 10
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: int
    failed_logins: int = 0
    locked_until: int | None = None

    @property
    def may_change(self) -> bool:
        return self.role == OPERATOR

    def locked(self, now: int) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: the hash of its cookie's token, never the token itself."""

    token_hash: str
    operator_id: int
    csrf: str
    created_at: int
    expires_at: int

    def expired(self, now: int) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Audit:
    """Who makes a change and what to call it in the audit log. A use case given one writes
    the entry in the change's own transaction, so a change never commits without its entry
    and an entry never outlives a change that rolled back."""

    operator: str
    action: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: int
    operator: str
    action: str
    target: str
    before: Any
    after: Any


def name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return "an operator name is 1-64 letters, digits, or . _ @ -"
    return None


def role_problem(role: str) -> str | None:
    if role not in ROLES:
        return f"role is one of {', '.join(ROLES)}"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"a password is at least {MIN_PASSWORD} characters"
    return None


def after_failure(operator: Operator, now: int) -> tuple[int, int | None]:
    """(failed_logins, locked_until) after one more wrong password: the MAX_FAILURES-th in
    a row locks the account and starts the count again."""
    failed = operator.failed_logins + 1
    if failed >= MAX_FAILURES:
        return 0, now + LOCKOUT_SECONDS
    return failed, operator.locked_until
