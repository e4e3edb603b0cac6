"""ProgramService writes on SQLite, no sockets: each use case is one unit of work."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from csip.config import Settings
from csip.domain.clock import Clock
from csip.domain.devices import Principal, PrincipalKind
from csip.domain.paging import Page
from csip.errors import InvalidValues
from csip.pki.identity import sfdi_from_lfdi
from csip.sep2 import schema
from csip.services.admin import AdminService, PreRegistration
from csip.services.bus import LocalBus
from csip.services.changes import Changes
from csip.services.programs import ControlSpec, ProgramService
from csip.services.sep2 import Sep2Service
from csip.store import Store

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"


@pytest.fixture
async def services(tmp_path: Path) -> tuple[ProgramService, list[list[str]]]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    settings = Settings(data_dir=tmp_path)
    bus = LocalBus()
    seen: list[list[str]] = []
    bus.subscribe(seen.append)
    sep2 = Sep2Service(
        store, settings, Clock(), schema.load(settings.profile), Changes(store, bus, Clock())
    )
    await AdminService(sep2).preregister([PreRegistration(LFDI, sfdi_from_lfdi(LFDI))])
    seen.clear()
    return ProgramService(sep2), seen


async def test_an_invalid_targeted_control_rolls_back_group_membership_and_program(
    services: tuple[ProgramService, list[list[str]]],
) -> None:
    programs, seen = services
    bad = ControlSpec(start=2_000_000_000, duration=60, base={"opModFixedW": 99_999})
    with pytest.raises(InvalidValues):
        await programs.create_targeted_control(bad, lfdi=LFDI, group_id=None, primacy=2)
    assert await programs.der.groups() == []
    assert await programs.der.programs() == []
    assert seen == []  # nothing committed, nothing invalidated
    good = ControlSpec(start=2_000_000_000, duration=60, base={"opModFixedW": 5000})
    program, control = await programs.create_targeted_control(
        good, lfdi=LFDI, group_id=None, primacy=2
    )
    assert control.program_id == program.id
    assert len(seen) == 1  # one unit of work: one delivery of its tags
    assert f"program:{program.id}" in seen[0] and "programs" not in seen[0]
    await programs.sep2.store.close()


async def test_deleting_a_device_drops_what_its_memberships_decided(
    services: tuple[ProgramService, list[list[str]]],
) -> None:
    """A deleted device leaves its groups (the rows cascade): the groups it linked may no
    longer share devices, so related-program states are dropped with it."""
    programs, seen = services
    group = await programs.create_group("feeder", "feeder", None)
    await programs.set_member(group.id, LFDI, True)
    seen.clear()
    assert await AdminService(programs.sep2).delete_end_device(LFDI)
    (tags,) = seen
    assert {"related", f"group:{group.id}"} <= set(tags)
    assert any(t.startswith("member:") for t in tags)
    await programs.sep2.store.close()


async def test_a_response_updates_the_cached_response_set_list_of_its_program_only(
    services: tuple[ProgramService, list[list[str]]],
) -> None:
    """The ResponseSetList counts a client's responses per program: a response drops the
    renderings of its program's responses, never every program's."""
    programs, seen = services
    group = await programs.create_group("feeder", "feeder", None)
    await programs.set_member(group.id, LFDI, True)
    first = await programs.create_program(group.id, "first", 1)
    second = await programs.create_program(group.id, "second", 2)
    spec = ControlSpec(start=2_000_000_000, duration=60, base={"opModFixedW": 5000})
    (control,) = await programs.create_controls(first.id, [spec])
    device = Principal(LFDI, sfdi_from_lfdi(LFDI), PrincipalKind.DEVICE)
    page = Page(0, None, 10)

    async def counts() -> list[str | None]:
        root = etree.fromstring(await programs.response_set_list(device, page))
        return [link.get("all") for link in root.iter("{*}ResponseListLink")]

    assert await counts() == ["0", "0"]
    seen.clear()
    answer = (
        '<DERControlResponse xmlns="urn:ieee:std:2030.5:ns">'
        f"<createdDateTime>1</createdDateTime><endDeviceLFDI>{LFDI}</endDeviceLFDI>"
        f"<status>1</status><subject>{control.mrid}</subject></DERControlResponse>"
    )
    await programs.post_response(device, first.id, answer.encode())
    (tags,) = seen
    assert f"responses:{first.id}" in tags and f"responses:{second.id}" not in tags
    assert await counts() == ["1", "0"]
    await programs.sep2.store.close()


async def test_a_new_program_drops_the_states_of_related_programs_only(
    services: tuple[ProgramService, list[list[str]]],
) -> None:
    """A program created in a group that shares devices with program A's group is ranked
    against A (A's state is dropped); one created in an unrelated group is not (B's state
    stays cached)."""
    programs, _ = services
    feeder = await programs.create_group("feeder", "feeder", None)
    other = await programs.create_group("other feeder", "feeder", None)
    everyone = await programs.create_group("everyone", None, None)
    await programs.set_member(feeder.id, LFDI, True)
    await programs.set_member(everyone.id, LFDI, True)
    a = await programs.create_program(feeder.id, "a", 2)
    b = await programs.create_program(other.id, "b", 2)
    await programs.state(a.id)
    await programs.state(b.id)
    key_a, key_b = ("program-state", a.id), ("program-state", b.id)
    assert programs.cache.get(key_a) is not None and programs.cache.get(key_b) is not None
    high = await programs.create_program(everyone.id, "high", 1)
    assert programs.cache.get(key_a) is None  # ranked against the new one now
    assert programs.cache.get(key_b) is not None  # shares no device with it
    assert f"program:{high.id}" in (await programs.state(a.id)).tags
    await programs.sep2.store.close()
