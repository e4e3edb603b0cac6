"""Changes said once: what each typed change (domain/changes.py) means for this worker's
cached renderings, for the other workers, and for 2030.5 subscribers.

This is the one module that spells cache tags; readers import the tag functions below to tag
what they cache, and writers only record facts (`tx.record(ControlsPublished(pid))`). Inside
the writer's transaction, `prepare` queues the 2030.5 notification intents of every resource
the change touched (the subscribed-resource hrefs of sep2/hrefs.py) and answers the tags,
which store.uow writes to the change log; after commit `committed` drops those tags here and
wakes the outbox. Other workers drop them when they replay the log row (services/bus.py).

OpenADR 3 changes are decided here too: `prepare` writes the webhook and MQTT outbox rows of
every subscription (and topic) that may see each changed object, rendered as that subscriber
would read it; the VTN only records `OadrObjectChanged(kind, id, operation, view)`.

Invalidation is per resource: a control published in one program drops that program's
renderings and the states of programs whose statuses depend on it, never every program.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from csip.domain.changes import (
    DELETE,
    AggregatorRemoved,
    CertificateChanged,
    Change,
    ControlBoundaryPassed,
    ControlsPublished,
    CurveAdded,
    DefaultControlChanged,
    DerDocumentChanged,
    DerFactsChanged,
    DeviceDocumentChanged,
    DeviceRef,
    EndDeviceChanged,
    EndDeviceListed,
    EverythingChanged,
    GroupCreated,
    GroupDeleted,
    LogEventAdded,
    MembershipChanged,
    MessagesPublished,
    MessagingProgramChanged,
    MirrorUsagePointChanged,
    NotificationHostsChanged,
    OadrObjectChanged,
    ProgramChanged,
    ProgramDeleted,
    ReadingsAdded,
    ResponseAdded,
    SettingsChanged,
    SubscriptionsChanged,
    VtnClientRemoved,
)
from csip.domain.clock import Clock
from csip.domain.groups import closure
from csip.openadr import rules
from csip.openadr.rules import EVENT, PROGRAM, RESOURCE, SUBSCRIPTION, VEN, VenView
from csip.sep2 import hrefs
from csip.services.bus import EVERYTHING, LocalBus
from csip.services.oadr_views import Views, all_views, dumps, render_object, rule_obj
from csip.store import Store
from csip.store import der as der_store
from csip.store import openadr as oadr
from csip.store import outbox as store_outbox
from csip.store.openadr import StoredObject
from csip.store.outbox import OutboxMessage, Session
from csip.store.subscriptions import notify_end_device_lists, notify_in
from csip.store.uow import UnitOfWork

# ---- the tag vocabulary (only this module builds these strings) ----------------------------
SETTINGS = "settings"
#: The group tree itself.
GROUPS = "groups"
#: Which groups share devices (potentiallySuperseded across programs).
RELATED = "related"
OADR = "oadr"
#: The per-aggregator notification host allow-lists (services/subscriptions.py).
NOTIFY_HOSTS = "notify-hosts"


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


def messaging_group(group_id: int) -> str:
    """A group's MessagingProgram(List), and the FSA documents that count it."""
    return f"msg-group:{group_id}"


def messaging(program_id: int) -> str:
    """One MessagingProgram: its TextMessages and what counts them."""
    return f"msg:{program_id}"


def program_of(name: str) -> int | None:
    """The program a `program()` tag names, else None (services/boundaries.py re-reads the
    controls of programs a write touched)."""
    if not name.startswith("program:"):
        return None
    ident = name[len("program:") :]
    return int(ident) if ident.isdigit() else None


def responses(program_id: int) -> str:
    return f"responses:{program_id}"


def readings(mup_id: int) -> str:
    """The readings of one MirrorUsagePoint, as only the metering read side (/upt) shows them;
    the mirror's own bytes do not depend on them."""
    return f"upt-readings:{mup_id}"


def answers_arrived(tags: Iterable[str]) -> bool:
    """Devices answered: a Response or readings were stored (the program engine's reports
    refresh on it, services/engine_reports.py)."""
    return any(t.startswith(("responses:", "upt-readings:")) for t in tags)


def cert(lfdi: str) -> str:
    return f"cert:{lfdi}"


def vtn_client(client_id: str) -> str:
    """An OpenADR client's cached token checks (services/vtn_auth.py)."""
    return f"vtn-client:{client_id}"


def der(device_id: int) -> str:
    """The DER documents (and ConnectionPoint) a device posted."""
    return f"der:{device_id}"


def facts(device_id: int) -> str:
    """A device's typed DER facts (services/fleet.py keeps the fleet's in memory)."""
    return f"facts:{device_id}"


def fleet_device_of(name: str) -> int | None:
    """The device whose fleet facts a tag may have changed: its facts, or the EndDevice
    itself (registered, deleted, its postRate set). Else None."""
    for prefix in ("facts:", "edev:"):
        if name.startswith(prefix):
            ident = name[len(prefix) :]
            return int(ident) if ident.isdigit() else None
    return None


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
    #: Devices that joined or left EndDeviceLists: the subscribers of every list that shows
    #: them (hrefs.end_device_list() held under the device or its aggregator's devices).
    device_lists: list[DeviceRef] = field(default_factory=list)


def effects_of(change: Change, affected_groups: Iterable[int] = ()) -> ChangeEffects:
    """The mapping, pure. `affected_groups` (MembershipChanged only): the groups whose
    device sets changed, with their ancestors (prepare() reads them in the transaction)."""
    out = ChangeEffects()
    tags, notify = out.tags, out.hrefs
    if isinstance(change, EndDeviceChanged):
        device = change.device
        tags += [edev(device.id), member(device.id)]
        tags += [t for s in scopes(device) for t in (edev_list(s), visible(s), mup_list(s))]
    elif isinstance(change, EndDeviceListed):
        tags += [edev_list(s) for s in scopes(change.device)]
        out.device_lists.append(change.device)
    elif isinstance(change, DeviceDocumentChanged):
        tags.append(edev(change.device_id))
    elif isinstance(change, DerDocumentChanged):
        tags.append(der(change.device_id))
    elif isinstance(change, DerFactsChanged):
        tags.append(facts(change.device_id))
    elif isinstance(change, LogEventAdded):
        tags.append(log(change.device_id))
    elif isinstance(change, SubscriptionsChanged):
        tags.append(subscriptions(change.device_id))
    elif isinstance(change, GroupCreated):
        tags += [GROUPS, RELATED]
    elif isinstance(change, GroupDeleted):
        tags += [GROUPS, RELATED, group(change.group_id)]
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
    elif isinstance(change, ProgramDeleted):
        tags += [program(change.program_id), group(change.group_id)]
        tags.append(responses(change.program_id))
        notify.append(hrefs.program_list(change.group_id))
    elif isinstance(change, ControlsPublished):
        tags.append(program(change.program_id))
        notify.append(hrefs.control_list(change.program_id))
    elif isinstance(change, MessagingProgramChanged):
        tags += [messaging(change.program_id), messaging_group(change.group_id)]
        notify.append(hrefs.messaging_program_list(change.group_id))
    elif isinstance(change, MessagesPublished):
        # the program's list counts its messages: its subscribers hear of them too
        tags.append(messaging(change.program_id))
        notify += [
            hrefs.text_message_list(change.program_id),
            hrefs.messaging_program_list(change.group_id),
        ]
    elif isinstance(change, ControlBoundaryPassed):
        # nothing to drop: every worker's renderings already expire at their own next boundary
        # (ProgramState.boundary); subscribers of the lists that changed with no write hear it
        notify.append(hrefs.control_list(change.program_id))
        if change.group_id is not None:  # DERProgramList shows its active and listed counts
            notify.append(hrefs.program_list(change.group_id))
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
        tags += [mup(change.mup_id), readings(change.mup_id)]
        if change.listed:
            tags += [mup_list(s) for s in scopes(change.device)]
    elif isinstance(change, ReadingsAdded):
        tags.append(readings(change.mup_id))
    elif isinstance(change, NotificationHostsChanged):
        tags.append(NOTIFY_HOSTS)
    elif isinstance(change, OadrObjectChanged):
        tags.append(OADR)
    elif isinstance(change, VtnClientRemoved):
        tags.append(vtn_client(change.client_id))
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
        mqtt_prefix: str | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.wake = wake
        #: The OpenADR MQTT topic prefix, or None when no MQTT broker is configured.
        self.mqtt_prefix = mqtt_prefix

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
        listed: list[DeviceRef] = []
        for recorded in tx.changes:
            change = cast(Change, recorded)
            affected: set[int] = set()
            if isinstance(change, MembershipChanged):
                affected = await self._affected_groups(tx.session, change)
            effects = effects_of(change, affected)
            tags += effects.tags
            notify += effects.hrefs
            listed += effects.device_lists
        if notify:
            await notify_in(tx.session, sorted(set(notify)), self.clock.now())
        if listed:
            await notify_end_device_lists(
                tx.session, hrefs.end_device_list(), listed, self.clock.now()
            )
        oadr_changes = [c for c in tx.changes if isinstance(c, OadrObjectChanged) and c.view]
        if oadr_changes:
            await self._oadr_notify(tx.session, oadr_changes)
        return list(dict.fromkeys(tags))

    # ---- OpenADR 3 notifications -------------------------------------------------------------
    async def _oadr_notify(self, s: Session, changes: list[OadrObjectChanged]) -> None:
        """Outbox rows for every subscription (and MQTT topic) that may see each change.

        Objects deleted in this unit are still seen as they were (their `view`): a deleted
        subscription hears of its own deletion, a deleted VEN's client keeps its view of the
        objects deleted with it."""
        deleted = [cast(StoredObject, c.view) for c in changes if c.operation == DELETE]
        subscriptions = [
            *await oadr.query(s, SUBSCRIPTION),
            *(o for o in deleted if o.kind == SUBSCRIPTION),
        ]
        listening = any(
            c.operation in op.get("operations", []) and c.kind in op.get("objects", [])
            for sub in subscriptions
            for op in sub.body.get("objectOperations", [])
            for c in changes
        )
        if not listening and self.mqtt_prefix is None:
            return  # nobody listens: no views to build
        views = await all_views(s)
        if deleted:
            views = _with_deleted(views, _views_of_deleted(deleted))
        programs: dict[str, rules.Obj | None] = {
            o.id: rule_obj(o) for o in deleted if o.kind == PROGRAM
        }
        messages: list[OutboxMessage] = []
        for change in changes:
            obj = cast(StoredObject, change.view)
            program = None
            if obj.kind == EVENT and obj.program_id:
                if obj.program_id not in programs:
                    found = await oadr.get(s, PROGRAM, obj.program_id)
                    programs[obj.program_id] = None if found is None else rule_obj(found)
                program = programs[obj.program_id]
            messages += self._oadr_messages(obj, change.operation, subscriptions, views, program)
        if messages:
            await store_outbox.enqueue(s, messages, self.clock.now())

    def _oadr_messages(
        self,
        obj: StoredObject,
        operation: str,
        subscriptions: list[StoredObject],
        views: Views,
        program: rules.Obj | None,
    ) -> list[OutboxMessage]:
        robj = rule_obj(obj)
        messages: list[OutboxMessage] = []
        for sub in subscriptions:
            view = None if sub.body.get("_role") == "bl" else views.of(sub.client_id)
            if not rules.visible(robj, view, program):
                continue
            if sub.program_id and obj.program_id != sub.program_id:
                continue
            granted = view.targets if view is not None and obj.kind in (PROGRAM, EVENT) else None
            if not rules.query_targets_match(obj.targets, sub.targets, granted):
                continue
            payload: bytes | None = None
            for op in sub.body.get("objectOperations", []):
                if obj.kind in op["objects"] and operation in op["operations"]:
                    payload = payload or _notification(obj, operation, view)
                    token = op.get("bearerToken")
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    messages.append(
                        OutboxMessage("webhook", op["callbackUrl"], payload, headers=headers)
                    )
        prefix = self.mqtt_prefix
        if prefix is not None:
            bl_payload = _notification(obj, operation, None)
            for topic in rules.bl_topic_names(prefix, robj, operation):
                messages.append(OutboxMessage("mqtt", topic, bl_payload))
            for ven_view in views.by_client.values():
                if not rules.visible(robj, ven_view, program):
                    continue
                payload = _notification(obj, operation, ven_view)
                for ven_id in sorted(ven_view.ven_ids):
                    name = rules.ven_topic_name(prefix, ven_id, robj, operation)
                    if name:
                        messages.append(OutboxMessage("mqtt", name, payload))
        return messages

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


def _notification(obj: StoredObject, operation: str, view: VenView | None) -> bytes:
    rendered = render_object(obj, view)
    note: dict[str, object] = {"objectType": obj.kind, "operation": operation, "object": rendered}
    if rendered.get("targets"):
        note["targets"] = rendered["targets"]
    return dumps(note)


def _views_of_deleted(deleted: list[StoredObject]) -> Views:
    """What the VENs and resources deleted in this unit granted their clients."""
    views = Views()
    for obj in deleted:
        if obj.kind not in (VEN, RESOURCE):
            continue
        client = obj.client_id or ""
        old = views.by_client.get(client, VenView(client))
        ven_ids = old.ven_ids | ({obj.id} if obj.kind == VEN else set())
        views.by_client[client] = VenView(client, ven_ids, old.targets | set(obj.targets))
    return views


def _with_deleted(views: Views, extra: Views) -> Views:
    merged = Views(dict(views.by_client))
    for client, view in extra.by_client.items():
        old = merged.by_client.get(client, VenView(client))
        merged.by_client[client] = VenView(
            client, old.ven_ids | view.ven_ids, old.targets | view.targets
        )
    return merged
