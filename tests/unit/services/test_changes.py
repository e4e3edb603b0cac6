"""Changes said once: the mapping from typed changes to cache tags and subscribed resources,
and the unit of work that applies it (SQLite in memory-fast files; real transactions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from csip.domain.changes import (
    ControlsPublished,
    DefaultControlChanged,
    DeviceRef,
    EndDeviceChanged,
    EndDeviceListed,
    GroupCreated,
    GroupDeleted,
    MembershipChanged,
    MirrorUsagePointChanged,
    NotificationHostsChanged,
    OadrObjectChanged,
    ProgramChanged,
    ProgramDeleted,
    ReadingsAdded,
    ResponseAdded,
    SettingsChanged,
    VtnClientRemoved,
)
from csip.domain.clock import Clock
from csip.domain.devices import EndDevice
from csip.domain.subscriptions import Subscription
from csip.errors import Unauthorized
from csip.sep2 import hrefs
from csip.services import changes as tag
from csip.services.bus import LocalBus
from csip.services.changes import Changes, effects_of
from csip.store import Store, outbox
from csip.store import der as der_store
from csip.store import store as end_devices
from csip.store.subscriptions import insert_subscription
from csip.store.uow import select_changes_after

DEVICE = DeviceRef(7, "AB" * 20, 3)


def test_a_control_drops_its_program_only_and_notifies_its_control_list() -> None:
    effects = effects_of(ControlsPublished(12, (1, 2)))
    assert effects.tags == ["program:12"]
    assert effects.hrefs == ["/derp/12/derc"]
    assert effects_of(DefaultControlChanged(12)).hrefs == ["/derp/12/dderc"]


def test_a_new_program_reaches_its_group_never_every_program() -> None:
    """Its group's lists, and (through the group tag every ranked program's state carries)
    the programs it can be ranked against: no tag that every program carries."""
    created = effects_of(ProgramChanged(5, 2, created=True))
    assert created.tags == ["program:5", "group:2"]
    assert created.hrefs == ["/fsa/2/derp"]
    assert effects_of(ProgramChanged(5, 2)).tags == ["program:5", "group:2"]  # a re-rank
    assert not hasattr(tag, "PROGRAM_SET")


def test_a_membership_change_drops_the_moved_devices_and_the_affected_groups() -> None:
    effects = effects_of(MembershipChanged(4, (DEVICE,)), affected_groups={1, 4})
    assert set(effects.tags) == {
        tag.RELATED,
        "member:7",
        f"visible:dev:{DEVICE.lfdi}",
        "visible:agg:3",
        "group:1",
        "group:4",
    }
    assert effects.hrefs == ["/edev/7/fsa"]
    assert "edev:7" not in effects.tags  # the EndDevice itself did not change


def test_a_device_change_drops_every_list_that_shows_it() -> None:
    effects = effects_of(EndDeviceChanged(DEVICE))
    assert {"edev:7", f"edevs:dev:{DEVICE.lfdi}", "edevs:agg:3"} <= set(effects.tags)
    assert effects.hrefs == []


def test_no_change_spells_every_program() -> None:
    for change in (ControlsPublished(1), DefaultControlChanged(1), GroupCreated(1)):
        assert "programs" not in effects_of(change).tags


def test_a_device_joining_or_leaving_the_lists_notifies_their_subscribers() -> None:
    effects = effects_of(EndDeviceListed(DEVICE))
    assert effects.tags == [f"edevs:dev:{DEVICE.lfdi}", "edevs:agg:3"]
    assert effects.device_lists == [DEVICE]  # the /edev subscribers that may see it
    assert effects.hrefs == []
    assert effects_of(EndDeviceChanged(DEVICE)).device_lists == []  # an update: same lists


def test_a_deleted_program_leaves_its_group_lists_and_the_response_sets() -> None:
    effects = effects_of(ProgramDeleted(5, 2))
    # group:2 also drops the states of programs ranked against it (they carry the tags of
    # every group sharing devices with theirs): never every program
    assert set(effects.tags) == {"program:5", "group:2", "responses:5"}
    assert effects.hrefs == ["/fsa/2/derp"]


def test_a_deleted_group_leaves_the_tree() -> None:
    effects = effects_of(GroupDeleted(4))
    assert set(effects.tags) == {tag.GROUPS, tag.RELATED, "group:4"}
    assert effects.hrefs == []  # its members leaving is a MembershipChanged


def test_a_response_drops_its_program_responses_only() -> None:
    assert effects_of(ResponseAdded(9)).tags == ["responses:9"]


def test_readings_drop_only_the_metering_read_side_of_their_mirror() -> None:
    assert effects_of(ReadingsAdded(3)).tags == ["upt-readings:3"]
    changed = effects_of(MirrorUsagePointChanged(3, DEVICE)).tags
    assert {"mup:3", "upt-readings:3", f"mups:dev:{DEVICE.lfdi}", "mups:agg:3"} == set(changed)
    assert "mup:3" not in effects_of(ReadingsAdded(3)).tags  # the mirror's bytes stay


def test_an_allow_list_change_drops_the_allow_lists() -> None:
    effects = effects_of(NotificationHostsChanged(3))
    assert effects.tags == [tag.NOTIFY_HOSTS]
    assert effects.hrefs == []


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'csip.db'}")
    await store.migrate()
    return store


async def test_a_unit_of_work_commits_the_change_log_row_and_applies_after_commit(
    store: Store,
) -> None:
    bus = LocalBus()
    seen: list[list[str]] = []
    bus.subscribe(seen.append)
    woken: list[int] = []
    changes = Changes(store, bus, Clock(), wake=lambda: woken.append(1))
    async with changes.unit_of_work() as tx:
        group = await der_store.insert_group(tx.session, "feeder", None, None, 0, 1)
        tx.record(GroupCreated(group.id))
        assert seen == []  # nothing is applied before commit
    assert seen == [[tag.GROUPS, tag.RELATED]]
    assert woken == []  # nobody subscribed: nothing queued, no wake
    async with store.transaction() as session:
        ((_seq, origin, tags),) = await select_changes_after(session, 0)
    assert origin == bus.worker_id and tags == [tag.GROUPS, tag.RELATED]
    await store.close()


async def test_a_failed_unit_of_work_leaves_nothing_and_applies_nothing(store: Store) -> None:
    bus = LocalBus()
    seen: list[list[str]] = []
    bus.subscribe(seen.append)
    changes = Changes(store, bus, Clock())
    with pytest.raises(RuntimeError):
        async with changes.unit_of_work() as tx:
            await der_store.insert_group(tx.session, "feeder", None, None, 0, 1)
            tx.record(SettingsChanged())
            raise RuntimeError("validation failed after the first write")
    assert seen == []
    async with store.transaction() as session:
        assert await select_changes_after(session, 0) == []
        groups = (await session.execute(text("SELECT count(*) FROM der_group"))).scalar_one()
    assert groups == 0
    await store.close()


async def test_a_unit_that_reads_then_writes_waits_for_the_lock_instead_of_failing(
    store: Store,
) -> None:
    """BEGIN IMMEDIATE: two units reading then writing at once both commit on SQLite."""
    import asyncio

    changes = Changes(store, LocalBus(), Clock())

    async def add(name: str) -> None:
        async with changes.unit_of_work() as tx:
            await der_store.select_groups(tx.session)
            await asyncio.sleep(0.05)  # the other unit reads meanwhile
            await der_store.insert_group(tx.session, name, None, None, 0, 1)
            tx.record(GroupCreated(0))

    await asyncio.gather(add("a"), add("b"), add("c"))
    async with store.transaction() as session:
        assert len(await der_store.select_groups(session)) == 3
    await store.close()


async def test_many_concurrent_writers_queue_rather_than_fail_on_sqlite(store: Store) -> None:
    """A fleet registering at once: more writers than SQLite's busy_timeout can absorb wait
    their turn in the process (one writer at a time is all SQLite allows anyway)."""
    import asyncio

    changes = Changes(store, LocalBus(), Clock())

    async def add(index: int) -> None:
        async with changes.unit_of_work() as tx:
            await der_store.insert_group(tx.session, f"g{index}", None, None, 0, 1)
            await asyncio.sleep(0.12)  # e.g. validating and rendering inside the unit
            tx.record(GroupCreated(0))

    await asyncio.gather(*(add(i) for i in range(60)))  # 7 s of work, busy_timeout is 5 s
    async with store.transaction() as session:
        assert len(await der_store.select_groups(session)) == 60
    await store.close()


async def test_old_change_log_rows_are_pruned(store: Store) -> None:
    """Every PRUNE_EVERY rows, rows older than KEEP_SECONDS go (the log stays small)."""
    import time

    from csip.store.tables_changes import ChangeLogRow
    from csip.store.uow import KEEP_SECONDS, PRUNE_EVERY

    async with store.transaction() as session:
        old = time.time() - KEEP_SECONDS - 60
        session.add_all(ChangeLogRow(origin="gone", created_at=old, payload="x") for _ in range(10))
    changes = Changes(store, LocalBus(), Clock())
    for _ in range(PRUNE_EVERY - 10):
        await changes.record(SettingsChanged())
    async with store.transaction() as session:
        rows = await select_changes_after(session, 0)
    assert len(rows) == PRUNE_EVERY - 10 and all(origin != "gone" for _, origin, _ in rows)
    await store.close()


async def test_a_device_joining_the_lists_queues_an_intent_for_each_list_that_shows_it(
    store: Store,
) -> None:
    """EndDeviceListed is turned into intents inside the unit: the /edev subscription held
    under the device itself hears it, one under an unrelated device does not."""
    bus = LocalBus()
    woken: list[int] = []
    changes = Changes(store, bus, Clock(), wake=lambda: woken.append(1))
    lfdis = ["AB" * 20, "CD" * 20]
    async with changes.unit_of_work() as tx:
        mine, other = await end_devices.insert_end_devices(
            tx.session, [EndDevice(0, lfdi, n + 1, 0, 0, 111115) for n, lfdi in enumerate(lfdis)]
        )
        for device in (mine, other):
            uri = f"https://receiver.example/{device.id}"
            sub = Subscription(0, device.id, hrefs.end_device_list(), uri, 10, 0, "", 0)
            await insert_subscription(tx.session, sub)
    assert woken == []
    async with changes.unit_of_work() as tx:
        tx.record(EndDeviceListed(DeviceRef(mine.id, mine.lfdi)))
    assert woken == [1]
    queued = [m.target for m, _state in await outbox.messages(store, "sep2")]
    assert queued == [f"https://receiver.example/{mine.id}"]
    await store.close()


def test_a_removed_vtn_client_drops_its_token_checks_only() -> None:
    assert effects_of(VtnClientRemoved("ven-1")).tags == ["vtn-client:ven-1"]


async def test_removing_a_vtn_client_reaches_every_worker_through_the_change_log(
    store: Store, tmp_path: Path
) -> None:
    """Its cached token checks are per worker: the removal is a unit of work whose log row
    the other workers replay (and this worker applies after commit)."""
    from csip.config import Settings
    from csip.services.vtn_auth import VtnAuth

    bus = LocalBus()
    clock = Clock()
    auth = VtnAuth(store, Settings(data_dir=tmp_path), clock, Changes(store, bus, clock))
    await auth.start()
    new = await auth.create_client("ven one", "ven")
    token, _ = auth.mint(new.client)
    assert (await auth.authenticate(f"Bearer {token}")).client_id == new.client.client_id
    await auth.remove_client("ven one")
    async with store.transaction() as session:
        ((_seq, _origin, tags),) = await select_changes_after(session, 0)
    assert tags == [f"vtn-client:{new.client.client_id}"]
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {token}")
    await store.close()


async def test_openadr_notifications_are_decided_here_from_the_recorded_change(
    store: Store,
) -> None:
    """The VTN only records OadrObjectChanged(kind, id, operation, view): the outbox rows of
    the subscriptions that may see it are written here, in the same transaction, and a
    DELETE is told with the object as it was (a deleted subscription hears of itself)."""
    from csip.openadr.rules import PROGRAM, SUBSCRIPTION
    from csip.store import openadr as oadr
    from csip.store.openadr import StoredObject
    from csip.store.outbox import claim_due

    def subscription() -> StoredObject:
        operations = [
            {
                "objects": [PROGRAM, SUBSCRIPTION],
                "operations": ["CREATE", "DELETE"],
                "callbackUrl": "https://bl.example/hook",
                "bearerToken": "t",
            }
        ]
        body = {"objectOperations": operations, "clientName": "bl", "_role": "bl"}
        return StoredObject("sub-1", SUBSCRIPTION, body, [], 0.0, 0.0, client_id="bl-1")

    program = StoredObject("prg-1", PROGRAM, {"programName": "p"}, [], 0.0, 0.0, name="p")
    changes = Changes(store, LocalBus(), Clock())
    async with changes.unit_of_work() as tx:
        sub = await oadr.insert(tx.session, subscription())
        await oadr.insert(tx.session, program)
        tx.record(OadrObjectChanged(PROGRAM, program.id, "CREATE", program))
    async with changes.unit_of_work() as tx:
        await oadr.mark_deleted(tx.session, [sub.id], 1.0)
        tx.record(OadrObjectChanged(SUBSCRIPTION, sub.id, "DELETE", sub))
    sent = await claim_due(store, Clock().now() + 60, 10, 30.0)
    notes = [json.loads(m.body) for m in sent]
    assert [(m.kind, m.target) for m in sent] == [("webhook", "https://bl.example/hook")] * 2
    assert [(n["objectType"], n["operation"]) for n in notes] == [
        (PROGRAM, "CREATE"),
        (SUBSCRIPTION, "DELETE"),
    ]
    assert all(m.headers == {"Authorization": "Bearer t"} for m in sent)
    await store.close()
