"""The program engine on SQLite, no sockets (issue 10 items 2-4): an OpenADR event written
through the VTN use case becomes DERControls in every enrolled group it reaches, in the same
unit of work; updates supersede, deletes cancel, bad payloads store nothing on either side."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from csip.app import App
from csip.domain.der import Status, event_statuses
from csip.domain.programs import ProgramTerms
from csip.errors import Conflict, InvalidValues, NotFound
from csip.openadr.rules import EVENT, PROGRAM, Principal
from csip.pki.identity import sfdi_from_lfdi
from csip.services.admin import PreRegistration
from csip.services.vtn import ListQuery
from csip.store import der as der_store
from csip.store.engine import ProgramChoices

from support import Pki, built_app

T0 = 2_000_000_000  # 2033-05-18T03:33:20Z
BL = Principal(
    "bl-1", "bl", frozenset({"read_all", "write_programs", "write_events", "write_reports"})
)
LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"


@pytest.fixture
async def app(tmp_path: Path, pki: Pki) -> AsyncIterator[App]:
    async with built_app(tmp_path, pki, T0) as built:
        yield built


def iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_program(app: App, name: str = "cbes") -> str:
    body = {
        "programName": name,
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT",
                "units": "KW",
            }
        ],
    }
    created = json.loads(await app.vtn.create(BL, PROGRAM, json.dumps(body).encode()))
    return str(created["id"])


def event_body(program_id: str, kws: list[float], start: int = T0 + 3600, **extra: Any) -> bytes:
    body = {
        "programID": program_id,
        "eventName": "peak",
        "intervalPeriod": {"start": iso(start), "duration": "PT1H"},
        "intervals": [
            {"id": i, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [kw]}]}
            for i, kw in enumerate(kws)
        ],
        **extra,
    }
    return json.dumps(body).encode()


async def group(app: App, description: str, target: str | None) -> int:
    made = await app.programs.create_group(description, "feeder", None)
    if target is not None:
        await app.engine.set_target(made.id, target)
    return made.id


async def controls_of(app: App, der_program_id: int) -> list[Any]:
    async with app.store.transaction() as s:
        controls = await der_store.select_controls(s, [der_program_id])
    statuses = event_statuses(controls, app.clock.now_int())
    return sorted(
        ((c.start, c.duration, dict(c.base), statuses[c.id].current) for c in controls),
        key=lambda x: (x[0], x[3]),
    )


async def test_an_event_becomes_contiguous_controls_in_every_enrolled_group(app: App) -> None:
    program_id = await make_program(app)
    north = await group(app, "north", "feeder-north")
    south = await group(app, "south", "feeder-south")
    enrolled = {g: await app.engine.enroll(program_id, g) for g in (north, south)}
    assert enrolled[north].target == "feeder-north"

    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [5.0, 2.5])))

    for g in (north, south):
        got = await controls_of(app, enrolled[g].der_program_id)
        assert got == [
            (T0 + 3600, 3600, {"opModTargetW": {"multiplier": 0, "value": 5000}}, Status.SCHEDULED),
            (T0 + 7200, 3600, {"opModTargetW": {"multiplier": 0, "value": 2500}}, Status.SCHEDULED),
        ]
    mapping = await app.engine.mapping(event["id"])
    assert [g["group"] for g in mapping["groups"]] == [north, south]
    assert all(len(g["controls"]) == 2 and not g["unmapped"] for g in mapping["groups"])


async def test_a_targeted_event_reaches_only_the_named_group(app: App) -> None:
    program_id = await make_program(app)
    north = await group(app, "north", "feeder-north")
    south = await group(app, "south", "feeder-south")
    n = await app.engine.enroll(program_id, north)
    s = await app.engine.enroll(program_id, south)
    await app.vtn.create(BL, EVENT, event_body(program_id, [3.0], targets=["feeder-south"]))
    assert await controls_of(app, n.der_program_id) == []
    assert len(await controls_of(app, s.der_program_id)) == 1


async def test_a_payload_that_cannot_be_converted_stores_nothing_on_either_side(
    app: App,
) -> None:
    program_id = await make_program(app)
    north = await group(app, "north", None)
    enrollment = await app.engine.enroll(program_id, north)
    with pytest.raises(InvalidValues, match="DISPATCH_SETPOINT"):
        await app.vtn.create(BL, EVENT, event_body(program_id, [0.0001234567]))
    assert await controls_of(app, enrollment.der_program_id) == []
    listed = json.loads(await app.vtn.list_objects(BL, EVENT, ListQuery()))
    assert listed == []


async def test_update_supersedes_and_delete_cancels(app: App) -> None:
    program_id = await make_program(app)
    north = await group(app, "north", None)
    enrollment = await app.engine.enroll(program_id, north)
    event = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [5.0, 5.0, 2.0])))
    pid = enrollment.der_program_id
    # equal consecutive intervals merge: one 2 h control, then one 1 h
    assert [(c[0], c[1]) for c in await controls_of(app, pid)] == [
        (T0 + 3600, 7200),
        (T0 + 10800, 3600),
    ]
    app.clock.set(T0 + 5400)  # inside the first control
    await app.vtn.update(BL, EVENT, event["id"], event_body(program_id, [5.0, 4.0, 2.0]))
    now = app.clock.now_int()
    got = await controls_of(app, pid)
    active = [c for c in got if c[3] is Status.ACTIVE and c[0] <= now < c[0] + c[1]]
    assert len(active) == 1 and active[0][2] == {"opModTargetW": {"multiplier": 0, "value": 5000}}
    assert sum(1 for c in got if c[3] is Status.SUPERSEDED) == 2
    live = sorted((c[0], c[1]) for c in got if c[3] in (Status.SCHEDULED, Status.ACTIVE))
    assert live == [(T0 + 3600, 3600), (T0 + 7200, 3600), (T0 + 10800, 3600)]  # no gap

    # an update that changes nothing for the group leaves its controls alone
    await app.vtn.update(BL, EVENT, event["id"], event_body(program_id, [5.0, 4.0, 2.0]))
    assert await controls_of(app, pid) == got

    await app.vtn.delete(BL, EVENT, event["id"])
    after = await controls_of(app, pid)
    assert {c[3] for c in after} == {Status.CANCELLED, Status.SUPERSEDED}
    assert sum(1 for c in after if c[3] is Status.CANCELLED) == 3  # the three that were live
    mapping = await app.engine.mapping(event["id"])
    assert mapping["deleted"] is True


async def test_a_group_enrolled_later_gets_the_events_not_yet_over(app: App) -> None:
    program_id = await make_program(app)
    await app.vtn.create(BL, EVENT, event_body(program_id, [1.0]))
    late = await app.engine.enroll(program_id, await group(app, "late", None))
    assert len(await controls_of(app, late.der_program_id)) == 1


async def test_deleting_the_program_cancels_its_future_controls(app: App) -> None:
    program_id = await make_program(app)
    enrollment = await app.engine.enroll(program_id, await group(app, "g", None))
    await app.vtn.create(BL, EVENT, event_body(program_id, [1.0]))
    await app.vtn.delete(BL, PROGRAM, program_id)
    (only,) = await controls_of(app, enrollment.der_program_id)
    assert only[3] is Status.CANCELLED


async def test_simple_levels_come_from_the_program_table(app: App) -> None:
    program_id = await make_program(app)
    enrollment = await app.engine.enroll(program_id, await group(app, "g", None))
    with pytest.raises(InvalidValues, match="SIMPLE level 1"):
        await app.engine.set_choices(
            ProgramChoices(program_id, 5, {1: {"opModFixedW": 99_999}}, None, None, 3600, "utility")
        )
    await app.engine.set_choices(
        ProgramChoices(program_id, 5, {1: {"opModConnect": False}}, None, None, 3600, "utility")
    )
    body = json.loads(event_body(program_id, [1.0]))
    body["intervals"][0]["payloads"] = [{"type": "SIMPLE", "values": [1]}]
    await app.vtn.create(BL, EVENT, json.dumps(body).encode())
    ((_, _, base, _),) = await controls_of(app, enrollment.der_program_id)
    assert base == {"opModConnect": False}


async def test_targets_are_unique_and_enrollment_needs_a_live_program(app: App) -> None:
    program_id = await make_program(app)
    await group(app, "a", "feeder-a")
    with pytest.raises(Conflict):
        await group(app, "b", "feeder-a")
    g = await group(app, "c", None)
    with pytest.raises(NotFound):
        await app.engine.enroll("no-such-program", g)
    await app.engine.enroll(program_id, g)
    with pytest.raises(Conflict):
        await app.engine.enroll(program_id, g)


async def test_devices_see_the_program_through_their_group(app: App) -> None:
    await app.admin.preregister([PreRegistration(LFDI, sfdi_from_lfdi(LFDI))])
    program_id = await make_program(app)
    g = await group(app, "north", None)
    await app.programs.set_member(g, LFDI, True)
    enrollment = await app.engine.enroll(program_id, g)
    programs = await app.programs.der.programs(g)
    assert [p.id for p in programs] == [enrollment.der_program_id]
    assert programs[0].primacy == 10 and programs[0].description == "cbes"


async def test_an_event_that_breaks_the_terms_is_refused_unless_forced(app: App) -> None:
    program_id = await make_program(app)
    enrollment = await app.engine.enroll(program_id, await group(app, "g", None))
    terms = ProgramTerms(max_event_seconds=2 * 3600, min_notice_seconds=1800)
    await app.engine.set_choices(
        ProgramChoices(program_id, 10, {}, None, None, 3600, "utility", terms)
    )
    with pytest.raises(InvalidValues, match="max_event_seconds: 10800 s > 7200 s"):
        await app.vtn.create(BL, EVENT, event_body(program_id, [1.0, 2.0, 3.0]))
    with pytest.raises(InvalidValues, match=r"min_notice_seconds: (599|600) s notice < 1800 s"):
        await app.vtn.create(BL, EVENT, event_body(program_id, [1.0], start=T0 + 600))
    assert await controls_of(app, enrollment.der_program_id) == []
    forced = json.loads(
        await app.vtn.create(BL, EVENT, event_body(program_id, [1.0, 2.0, 3.0]), force=True)
    )
    assert len(await controls_of(app, enrollment.der_program_id)) == 3
    mapping = await app.engine.mapping(forced["id"])
    assert mapping["forced"][0]["broken"] == ["max_event_seconds: 10800 s > 7200 s"]
    # an update that keeps the start is not held to the notice it was first given
    ok = json.loads(await app.vtn.create(BL, EVENT, event_body(program_id, [1.0])))
    app.clock.set(T0 + 3000)  # 600 s before it starts
    await app.vtn.update(BL, EVENT, ok["id"], event_body(program_id, [1.5]))


async def test_alerts_and_notices_become_text_messages_without_churn(app: App) -> None:
    program_id = await make_program(app)
    g = await group(app, "north", None)
    await app.engine.enroll(program_id, g)
    await app.engine.set_choices(
        ProgramChoices(
            program_id, 10, {}, "Battery event at 5 pm", "Event over, thank you", 1800, "PG&E"
        )
    )
    body = json.loads(event_body(program_id, [1.0]))
    body["intervals"][0]["payloads"].append(
        {"type": "ALERT_GRID_EMERGENCY", "values": ["Grid emergency: keep your reserve"]}
    )
    event = json.loads(await app.vtn.create(BL, EVENT, json.dumps(body).encode()))
    _, messages = await app.messaging.history(g)
    assert sorted((m.text, m.priority, m.start, m.duration) for m in messages) == [
        ("Battery event at 5 pm", 1, T0 + 3600 - 1800, 1800),
        ("Event over, thank you", 1, T0 + 7200, 1800),
        ("Grid emergency: keep your reserve", 3, T0 + 3600, 3600),
    ]
    assert {m.originator for m in messages} == {"PG&E"}
    mapping = await app.engine.mapping(event["id"])
    assert mapping["groups"][0]["messages"] == 3

    # an update that changes nothing the group reads leaves its messages alone
    body["eventName"] = "renamed"
    await app.vtn.update(BL, EVENT, event["id"], json.dumps(body).encode())
    _, again = await app.messaging.history(g)
    assert [m.id for m in again] == [m.id for m in messages]
    assert all(m.cancelled_at is None for m in again)

    await app.vtn.delete(BL, EVENT, event["id"])
    _, after = await app.messaging.history(g)
    assert all(m.cancelled_at is not None for m in after)
