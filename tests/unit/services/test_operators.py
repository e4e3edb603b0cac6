"""Console operators on SQLite, no sockets (issue 13 item 2): passwords stored hashed,
lockout after repeated failures (even the right password is refused until it lifts), sessions
that end at logout or expiry, CSRF tokens per session, viewers refused every change, and the
audit log recording who changed what with before and after."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csip.app import App
from csip.domain.operators import LOCKOUT_SECONDS, MAX_FAILURES, SESSION_SECONDS, Audit
from csip.errors import BadRequest, Conflict, CsipError, Forbidden, NotFound
from csip.openadr.rules import EVENT, Principal
from csip.services.console import READER, EventForm
from csip.services.demo import load_into
from csip.services.operators import LoginRefused, OperatorService
from csip.store import console as console_store
from csip.store import operators as operator_store

from support import Pki, built_app

T0 = 2_000_000_000
PASSWORD = "correct horse battery"


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0, dispatch_watch=False) as built:
        yield built


async def test_passwords_are_stored_hashed_and_checked(app: App) -> None:
    await app.operators.add("alice", "operator", PASSWORD)
    async with app.store.transaction() as s:
        stored = await operator_store.select_operator(s, "alice")
    assert stored is not None
    assert PASSWORD not in stored.password_hash
    assert stored.password_hash.startswith("$argon2id$")
    done = await app.operators.login("alice", PASSWORD)
    assert done.operator.name == "alice"
    with pytest.raises(LoginRefused):
        await app.operators.login("alice", "wrong password!")
    with pytest.raises(LoginRefused, match="wrong operator name or password"):
        await app.operators.login("nobody", PASSWORD)


async def test_names_roles_and_short_passwords_are_refused(app: App) -> None:
    with pytest.raises(BadRequest, match="role"):
        await app.operators.add("bob", "admin", PASSWORD)
    with pytest.raises(BadRequest, match="at least"):
        await app.operators.add("bob", "viewer", "short")
    with pytest.raises(BadRequest, match="name"):
        await app.operators.add("bob smith", "viewer", PASSWORD)
    await app.operators.add("bob", "viewer", PASSWORD)
    with pytest.raises(Conflict):
        await app.operators.add("bob", "operator", PASSWORD)


async def test_repeated_failures_lock_the_account_until_it_lifts(app: App) -> None:
    await app.operators.add("alice", "operator", PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginRefused):
            await app.operators.login("alice", "not the password")
    with pytest.raises(LoginRefused, match="locked"):
        await app.operators.login("alice", PASSWORD)  # even the right one
    app.clock.advance(LOCKOUT_SECONDS + 1)
    assert (await app.operators.login("alice", PASSWORD)).operator.name == "alice"
    _, entries = await app.operators.audit_log()
    assert [e.action for e in entries if e.target == "alice"][:2] == [
        "operator.locked",
        "operator.add",
    ]


async def test_an_unlock_lifts_a_lockout_at_once(app: App) -> None:
    await app.operators.add("alice", "operator", PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginRefused):
            await app.operators.login("alice", "not the password")
    await app.operators.unlock("alice")
    assert (await app.operators.login("alice", PASSWORD)).operator.name == "alice"


async def test_sessions_end_at_logout_and_expiry_and_carry_their_csrf_token(app: App) -> None:
    await app.operators.add("alice", "operator", PASSWORD)
    first = await app.operators.login("alice", PASSWORD)
    second = await app.operators.login("alice", PASSWORD)
    found = await app.operators.session(first.token)
    assert found is not None and found[0].name == "alice"
    assert OperatorService.csrf_matches(found[1], first.session.csrf)
    assert not OperatorService.csrf_matches(found[1], second.session.csrf)
    assert not OperatorService.csrf_matches(found[1], "")
    assert await app.operators.session(first.session.token_hash) is None  # hash is no cookie
    await app.operators.logout(first.token)
    assert await app.operators.session(first.token) is None
    assert await app.operators.session(second.token) is not None
    app.clock.advance(SESSION_SECONDS)
    assert await app.operators.session(second.token) is None


async def test_removing_an_operator_ends_their_sessions(app: App) -> None:
    await app.operators.add("alice", "operator", PASSWORD)
    done = await app.operators.login("alice", PASSWORD)
    await app.operators.remove("alice")
    assert await app.operators.session(done.token) is None


async def test_a_viewer_cannot_change_anything_and_changes_are_audited(app: App, pki: Pki) -> None:
    await load_into(app, 4)
    viewer = await app.operators.add("victor", "viewer", PASSWORD)
    operator = await app.operators.add("alice", "operator", PASSWORD)
    (program_id, _), *_ = await app.console.program_choices()
    form = EventForm(
        program=program_id,
        name="console peak",
        start="2033-05-18T05:00",
        duration_minutes="30",
        intervals="2",
        payload_type="SIMPLE",
        values="1, 2",
        targets=["feeder-north"],
    )
    with pytest.raises(Forbidden):
        await app.console.create_event(viewer, form)
    event_id = await app.console.create_event(operator, form)
    stored = json.loads(await app.vtn.get_object(READER, EVENT, event_id))
    assert stored["eventName"] == "console peak"
    assert [i["payloads"][0]["values"] for i in stored["intervals"]] == [[1], [2]]
    with pytest.raises(Forbidden):
        await app.console.cancel_event(viewer, event_id)
    await app.console.cancel_event(operator, event_id)
    _, entries = await app.operators.audit_log(operator="alice")
    cancel, create = entries[:2]
    assert (create.action, create.target, create.before) == ("event.create", event_id, None)
    assert create.after["eventName"] == "console peak"
    assert (cancel.action, cancel.before["eventName"]) == ("event.cancel", "console peak")
    assert all(e.operator != "victor" for e in (await app.operators.audit_log())[1])


async def test_the_event_form_says_what_to_fix(app: App) -> None:
    form = EventForm(
        program="p",
        start="tomorrow at five",
        duration_minutes="0",
        intervals="2",
        payload_type="SIMPLE",
        values="1, 2, 3",
    )
    with pytest.raises(BadRequest):
        form.body(T0)
    assert set(form.problems) == {"start", "duration_minutes", "values"}
    assert "UTC date and time" in form.problems["start"]
    late = EventForm(program="p", start="2020-01-01T00:00", duration_minutes="60", values="1")
    with pytest.raises(BadRequest):
        late.body(T0)
    assert "over already" in late.problems["start"]


async def test_an_audit_entry_commits_with_its_change_or_not_at_all(app: App) -> None:
    """The entry is written in the change's own unit of work: a change the engine refuses
    after the entry was written leaves neither, and every committed change has its entry."""
    await load_into(app, 4)
    operator = await app.operators.add("alice", "operator", PASSWORD)
    (program_id, _), *_ = await app.console.program_choices()
    _, before = await app.operators.audit_log(operator="alice")
    form = EventForm(
        program=program_id,
        name="ok peak",
        start="2033-05-18T05:00",
        duration_minutes="30",
        intervals="1",
        payload_type="SIMPLE",
        values="1",
    )
    event_id = await app.console.create_event(operator, form)
    # the engine refuses a SIMPLE level outside 0-3 while planning, after the entry was
    # written in the same transaction: both roll back
    body = form.body(T0)
    body["eventName"] = "refused peak"
    body["intervals"][0]["payloads"][0]["values"] = [7]
    principal = _operator_principal("alice")
    with pytest.raises(CsipError, match="level 0, 1, 2 or 3"):
        await app.vtn.create(
            principal, EVENT, json.dumps(body).encode(), audit=Audit("alice", "event.create")
        )
    with pytest.raises(CsipError, match="level 0, 1, 2 or 3"):
        await app.vtn.update(
            principal,
            EVENT,
            event_id,
            json.dumps(body).encode(),
            audit=Audit("alice", "event.update"),
        )
    stored = json.loads(await app.vtn.get_object(READER, EVENT, event_id))
    assert stored["eventName"] == "ok peak"  # the update did not happen either
    await app.console.cancel_event(operator, event_id)
    with pytest.raises(NotFound):  # cancelled already: nothing changes, nothing is logged
        await app.console.cancel_event(operator, event_id)
    _, entries = await app.operators.audit_log(operator="alice")
    new = entries[: len(entries) - len(before)]
    assert [(e.action, e.target) for e in new] == [
        ("event.cancel", event_id),
        ("event.create", event_id),
    ]
    assert new[1].after["eventName"] == "ok peak"
    assert new[0].before["eventName"] == "ok peak" and new[0].after["deleted"] is True
    # the events that exist are exactly the audited ones (no change without its entry)
    async with app.store.transaction() as s:
        history = await console_store.select_event_history(s, program_id)
    console_made = [e.id for e in history if e.body.get("eventName") in ("ok peak", "refused peak")]
    assert console_made == [event_id]


def _operator_principal(name: str) -> Principal:
    return Principal(f"console:{name}", "bl", frozenset({"read_all", "write_events"}))
