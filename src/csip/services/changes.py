"""Changes said once: what each typed change (domain/changes.py) means for this worker's
cached renderings, for the other workers, and for 2030.5 subscribers.

This is the one module that spells cache tags; readers import the tag functions below to tag
what they cache, and writers only record facts (`tx.record(ControlsPublished(pid))`). Inside
the writer's transaction, `prepare` queues the 2030.5 notification intents of every resource
the change touched (the subscribed-resource hrefs of sep2/hrefs.py) and answers the tags,
which store.uow writes to the change log; after commit `committed` drops those tags here and
wakes the outbox. Other workers drop them when they replay the log row (services/bus.py).

Invalidation is per resource: a control published in one program drops that program's
renderings and the states of programs whose statuses depend on it, never every program.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from csip.domain.changes import (
    AggregatorRemoved,
    CertificateChanged,
    Change,
    ControlsPublished,
    CurveAdded,
    DefaultControlChanged,
    DerDocumentChanged,
    DeviceDocumentChanged,
    DeviceRef,
    EndDeviceChanged,
    EverythingChanged,
    GroupCreated,
    LogEventAdded,
    MembershipChanged,
    MirrorUsagePointChanged,
    OadrObjectChanged,
    ProgramChanged,
    ResponseAdded,
    SettingsChanged,
    SubscriptionsChanged,
)
from csip.domain.clock import Clock
from csip.domain.groups import closure
from csip.sep2 import hrefs
from csip.services.bus import EVERYTHING, LocalBus
from csip.store import Store
from csip.store import der as der_store
from csip.store.outbox import Session
from csip.store.subscriptions import notify_in
from csip.store.uow import UnitOfWork

# ---- the tag vocabulary (only this module builds these strings) ----------------------------
SETTINGS = "settings"
#: The group tree itself.
GROUPS = "groups"
#: Which groups share devices (potentiallySuperseded across programs).
RELATED = "related"
OADR = "oadr"


def edev(device_id: int) -> str:
    """An EndDevice and every resource under it."""
    return f"edev:{device_id}"


def edev_list(scope: str) -> str:
    """The EndDeviceList (and /dcap) of a client scope (Principal.scope)."""
    return f"edevs:{scope}"


def member(device_id: int) -> str:
    """The groups an EndDevice is in (its FunctionSetAssignmentsList and what derives)."""
    return f"member:{device_id}"


def visible(scope: str) -> str:
    """The groups some device of a client scope is in."""
    return f"visible:{scope}"


def group(group_id: int) -> str:
    """One FunctionSetAssignments: its programs, and the states of programs targeting it."""
    return f"group:{group_id}"


def program(program_id: int) -> str:
    """One DERProgram: its controls, default control, curves, and what they decide."""
    return f"program:{program_id}"


def responses(program_id: int) -> str:
    return f"responses:{program_id}"


def cert(lfdi: str) -> str:
    return f"cert:{lfdi}"


def der(device_id: int) -> str:
    """The DER documents (and ConnectionPoint) a device posted."""
    return f"der:{device_id}"


def log(device_id: int) -> str:
    return f"lel:{device_id}"


def subscriptions(device_id: int) -> str:
    return f"subs:{device_id}"


def mup(mup_id: int) -> str:
    return f"mup:{mup_id}"


def mup_list(scope: str) -> str:
    return f"mups:{scope}"


def scopes(device: DeviceRef) -> list[str]:
    """The client scopes that see a device: its own certificate's, its aggregator's."""
    found = [f"dev:{device.lfdi}"]
    if device.aggregator_id is not None:
        found.append(f"agg:{device.aggregator_id}")
    return found


# ---- what each change means ---------------------------------------------------------------
@dataclass
class ChangeEffects:
    """Tags to drop everywhere, 2030.5 resources whose subscribers hear of it."""

    tags: list[str] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)


def effects_of(change: Change, affected_groups: Iterable[int] = ()) -> ChangeEffects:
    """The mapping, pure. `affected_groups` (MembershipChanged only): the groups whose
    device sets changed, with their ancestors (prepare() reads them in the transaction)."""
    out = ChangeEffects()
    tags, notify = out.tags, out.hrefs
    if isinstance(change, EndDeviceChanged):
        device = change.device
        tags += [edev(device.id), member(device.id)]
        tags += [t for s in scopes(device) for t in (edev_list(s), visible(s), mup_list(s))]
    elif isinstance(change, DeviceDocumentChanged):
        tags.append(edev(change.device_id))
    elif isinstance(change, DerDocumentChanged):
        tags.append(der(change.device_id))
    elif isinstance(change, LogEventAdded):
        tags.append(log(change.device_id))
    elif isinstance(change, SubscriptionsChanged):
        tags.append(subscriptions(change.device_id))
    elif isinstance(change, GroupCreated):
        tags += [GROUPS, RELATED]
    elif isinstance(change, MembershipChanged):
        tags.append(RELATED)
        for device in change.devices:
            tags.append(member(device.id))
            tags += [visible(s) for s in scopes(device)]
            notify.append(hrefs.fsa_list(device.id))
        tags += [group(g) for g in sorted({change.group_id, *affected_groups})]
    elif isinstance(change, ProgramChanged):
        # group(): its group's lists, and the states of programs ranked against it (they
        # carry the tags of every group that shares devices with theirs): never every program
        tags += [program(change.program_id), group(change.group_id)]
        notify.append(hrefs.program_list(change.group_id))
    elif isinstance(change, ControlsPublished):
        tags.append(program(change.program_id))
        notify.append(hrefs.control_list(change.program_id))
    elif isinstance(change, DefaultControlChanged):
        tags.append(program(change.program_id))
        notify.append(hrefs.default_control(change.program_id))
    elif isinstance(change, CurveAdded):
        tags.append(program(change.program_id))
    elif isinstance(change, ResponseAdded):
        tags.append(responses(change.program_id))
    elif isinstance(change, SettingsChanged):
        tags.append(SETTINGS)
    elif isinstance(change, CertificateChanged):
        tags.append(cert(change.lfdi))
    elif isinstance(change, AggregatorRemoved):
        tags.append(edev_list(f"agg:{change.aggregator_id}"))
    elif isinstance(change, MirrorUsagePointChanged):
        tags.append(mup(change.mup_id))
        if change.listed:
            tags += [mup_list(s) for s in scopes(change.device)]
    elif isinstance(change, OadrObjectChanged):
        tags.append(OADR)
    elif isinstance(change, EverythingChanged):
        tags.append(EVERYTHING)
    else:  # pragma: no cover - mypy checks the union is covered
        raise TypeError(f"unknown change {change!r}")
    return out


def _nothing() -> None:
    return None


class Changes:
    """Applies recorded changes: the store.uow Effects of every csip service."""

    def __init__(
        self,
        store: Store,
        bus: LocalBus,
        clock: Clock,
        wake: Callable[[], None] = _nothing,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.wake = wake

    @property
    def worker_id(self) -> str:
        return self.bus.worker_id

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self.store.unit_of_work(self) as tx:
            yield tx

    async def record(self, *changes: Change) -> None:
        """A unit of work of changes alone (no row changed here: a moved clock)."""
        async with self.unit_of_work() as tx:
            tx.record(*changes)

    async def prepare(self, tx: UnitOfWork) -> list[str]:
        tags: list[str] = []
        notify: list[str] = []
        for recorded in tx.changes:
            change = cast(Change, recorded)
            affected: set[int] = set()
            if isinstance(change, MembershipChanged):
                affected = await self._affected_groups(tx.session, change)
            effects = effects_of(change, affected)
            tags += effects.tags
            notify += effects.hrefs
        if notify:
            await notify_in(tx.session, sorted(set(notify)), self.clock.now())
        return list(dict.fromkeys(tags))

    async def _affected_groups(self, session: Session, change: MembershipChanged) -> set[int]:
        """Groups whose pairs of shared devices may have changed: the group and every group
        the moved devices are (still) in, with ancestors."""
        groups = await der_store.select_groups(session)
        ids = [d.id for d in change.devices]
        memberships = await der_store.select_memberships(session, ids)
        direct = {change.group_id}.union(*memberships.values())
        return closure(groups, direct)

    def committed(self, seq: int | None, tags: list[str], notified: bool) -> None:
        self.bus.committed(seq, tags)
        if notified:
            self.wake()
