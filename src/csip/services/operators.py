"""Console operators: accounts, logins with lockout, sessions with their CSRF token, and the
audit log of every change an operator makes (issue 13 item 2).

Passwords are hashed with argon2id (argon2-cffi: the reference implementation's bindings,
salt and parameters kept in the hash string, so raising the parameters later re-hashes at
the next login). A hash costs tens of milliseconds and 64 MiB on purpose: it runs in a
thread, never on the event loop.

Session cookies carry a random token; the database keeps only its sha256, so a copy of the
database logs nobody in. Each session has its own CSRF token, which every console form
posts back (`csrf_matches`).

Nothing here is cached: an operator's session is read from the database on each console
request (a handful of people, not a fleet), so a logout, a removal or a lockout holds in
every worker and survives a restart with no invalidation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from csip.domain.clock import Clock
from csip.domain.operators import (
    LOCKOUT_SECONDS,
    SESSION_SECONDS,
    AuditEntry,
    Operator,
    Session,
    after_failure,
    name_problem,
    password_problem,
    role_problem,
)
from csip.errors import BadRequest, Forbidden, NotFound, Unauthorized
from csip.services.changes import Changes
from csip.store import Store
from csip.store import operators as store

_HASHER = PasswordHasher()
#: Verified against when the name is unknown, so a wrong name costs what a wrong password
#: costs (no telling names apart by time).
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class LoginRefused(Unauthorized):
    """Wrong operator name or password (or the account is locked)."""


def session_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class LoggedIn:
    """A new session: the cookie's token (shown to the browser once) and the session."""

    token: str
    session: Session
    operator: Operator


class OperatorService:
    def __init__(self, store: Store, clock: Clock, changes: Changes) -> None:
        self.store = store
        self.clock = clock
        self.changes = changes

    # ---- accounts (`csip operators ...`) ---------------------------------------------
    async def add(self, name: str, role: str, password: str) -> Operator:
        problem = name_problem(name) or role_problem(role) or password_problem(password)
        if problem:
            raise BadRequest(problem)
        hashed = await asyncio.to_thread(hash_password, password)
        async with self.changes.unit_of_work() as tx:
            now = self.clock.now_int()
            operator = await store.insert_operator(tx.session, name, role, hashed, now)
            await store.insert_audit(
                tx.session, now, "cli", "operator.add", name, None, {"role": role}
            )
        return operator

    async def remove(self, name: str) -> None:
        async with self.changes.unit_of_work() as tx:
            before = await store.select_operator(tx.session, name)
            if before is None or not await store.delete_operator(tx.session, name):
                raise NotFound(f"no operator named {name!r}")
            await store.insert_audit(
                tx.session,
                self.clock.now_int(),
                "cli",
                "operator.remove",
                name,
                {"role": before.role},
                None,
            )

    async def unlock(self, name: str) -> None:
        async with self.changes.unit_of_work() as tx:
            found = await store.select_operator(tx.session, name)
            if found is None:
                raise NotFound(f"no operator named {name!r}")
            await store.update_operator(tx.session, found.id, failed_logins=0, locked_until=None)

    async def operators(self) -> list[Operator]:
        async with self.store.transaction() as s:
            return await store.select_operators(s)

    # ---- logins and sessions -----------------------------------------------------------
    async def login(self, name: str, password: str) -> LoggedIn:
        """A new session, or LoginRefused. A wrong password counts towards the lockout; a
        locked account is refused before its password is checked."""
        async with self.store.transaction() as s:
            operator = await store.select_operator(s, name)
        now = self.clock.now_int()
        if operator is None:
            await asyncio.to_thread(password_matches, _DUMMY_HASH, password)
            raise LoginRefused("wrong operator name or password")
        if operator.locked(now):
            minutes = max(1, ((operator.locked_until or now) - now + 59) // 60)
            raise LoginRefused(
                f"this account is locked after repeated wrong passwords; try again in "
                f"{minutes} minute(s) or ask an administrator (`csip operators unlock`)"
            )
        if not await asyncio.to_thread(password_matches, operator.password_hash, password):
            failed, locked_until = after_failure(operator, now)
            async with self.changes.unit_of_work() as tx:
                await store.update_operator(
                    tx.session, operator.id, failed_logins=failed, locked_until=locked_until
                )
                if locked_until is not None and locked_until != operator.locked_until:
                    await store.insert_audit(
                        tx.session,
                        now,
                        operator.name,
                        "operator.locked",
                        operator.name,
                        None,
                        {"locked_for_seconds": LOCKOUT_SECONDS},
                    )
            raise LoginRefused("wrong operator name or password")
        token = secrets.token_urlsafe(32)
        session = Session(
            session_token_hash(token),
            operator.id,
            secrets.token_urlsafe(32),
            now,
            now + SESSION_SECONDS,
        )
        async with self.changes.unit_of_work() as tx:
            await store.delete_sessions_expired(tx.session, now)
            values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
            if _HASHER.check_needs_rehash(operator.password_hash):
                values["password_hash"] = await asyncio.to_thread(hash_password, password)
            await store.update_operator(tx.session, operator.id, **values)
            await store.insert_session(tx.session, session)
        return LoggedIn(token, session, operator)

    async def session(self, token: str | None) -> tuple[Operator, Session] | None:
        """The operator and session a cookie's token stands for (None: none, expired, or
        its operator was removed)."""
        if not token:
            return None
        async with self.store.transaction() as s:
            session = await store.select_session(s, session_token_hash(token))
            if session is None or session.expired(self.clock.now_int()):
                return None
            operator = await store.select_operator_by_id(s, session.operator_id)
        return None if operator is None else (operator, session)

    async def logout(self, token: str) -> None:
        async with self.changes.unit_of_work() as tx:
            await store.delete_session(tx.session, session_token_hash(token))

    @staticmethod
    def csrf_matches(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf, presented or "")

    @staticmethod
    def require_change(operator: Operator) -> None:
        if not operator.may_change:
            raise Forbidden(f"{operator.name} is a viewer: viewers cannot change anything")

    # ---- audit -------------------------------------------------------------------------
    async def audit(
        self, who: str, action: str, target: str, before: Any = None, after: Any = None
    ) -> None:
        async with self.changes.unit_of_work() as tx:
            await store.insert_audit(
                tx.session, self.clock.now_int(), who, action, target, before, after
            )

    async def audit_log(
        self, offset: int = 0, limit: int = 100, operator: str | None = None
    ) -> tuple[int, list[AuditEntry]]:
        async with self.store.transaction() as s:
            return await store.select_audit(s, offset, limit, operator)


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "operator": entry.operator,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
    }
