"""The OpenADR 3.1.0 VTN use cases: CRUD of the six object kinds with 3.1.0 privacy,
notifications to webhooks and MQTT through the outbox, and MQTT topic names.

Every write is one unit of work (store.uow): the object, the objects it cascades to and the
outbox rows of the notifications it causes commit together, then the outbox worker is woken.
Reads are served from a per-worker cache of rendered bodies, keyed by caller and query and
dropped on every OpenADR write (in every worker, through the bus), because VENs poll far
more often than anything changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from csip.config import Settings
from csip.domain.changes import CREATE, DELETE, UPDATE, OadrObjectChanged
from csip.domain.clock import Clock
from csip.domain.operators import Audit
from csip.errors import BadRequest, Conflict, Forbidden, NotFound
from csip.openadr import models, rules
from csip.openadr.rules import (
    EVENT,
    PROGRAM,
    REPORT,
    RESOURCE,
    SUBSCRIPTION,
    VEN,
    Principal,
    VenView,
)
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.changes import Changes
from csip.services.engine import EngineService
from csip.services.oadr_views import dumps, render_object, rule_obj
from csip.services.vtn_auth import VtnAuth
from csip.services.vtn_notify import CallbackChecker
from csip.store import Store
from csip.store import openadr as oadr
from csip.store import operators as operators_store
from csip.store.openadr import StoredObject
from csip.store.outbox import Session

TAG = tag.OADR
READ_SCOPE = {
    PROGRAM: "read_targets",
    EVENT: "read_targets",
    REPORT: "read_ven_objects",
    SUBSCRIPTION: "read_ven_objects",
    VEN: "read_ven_objects",
    RESOURCE: "read_ven_objects",
}
WRITE_SCOPE = {
    PROGRAM: "write_programs",
    EVENT: "write_events",
    REPORT: "write_reports",
    SUBSCRIPTION: "write_subscriptions",
    VEN: "write_vens",
    RESOURCE: "write_vens",
}
MAX_LIMIT = 50
_CACHE_MAX = 100_000


@dataclass(frozen=True)
class ListQuery:
    """The query parameters of a list GET (only those the YAML names for the kind matter)."""

    skip: int = 0
    limit: int = MAX_LIMIT
    targets: tuple[str, ...] = ()
    program_id: str | None = None
    event_id: str | None = None
    client_name: str | None = None
    ven_name: str | None = None
    resource_name: str | None = None
    ven_id: str | None = None
    objects: tuple[str, ...] = ()
    active: bool | None = None


class VtnService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        changes: Changes,
        auth: VtnAuth,
        checker: CallbackChecker | None = None,
        engine: EngineService | None = None,
    ) -> None:
        """`changes`: the app's one Changes (its MQTT prefix set when MQTT is configured);
        writes record OadrObjectChanged there, which decides the notifications."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.auth = auth
        self.checker = checker or CallbackChecker(
            settings.vtn_webhook_allow_loopback, settings.vtn_webhook_timeout
        )
        self.mqtt_enabled = bool(settings.vtn_mqtt_url)
        self.prefix = settings.vtn_mqtt_topic_prefix
        self._cache: dict[tuple[Any, ...], bytes] = {}
        #: Bytes of the bodies in _cache; past settings.cache_max_bytes it is emptied.
        self.cache_bytes = 0
        self._generation = 0
        self.changes = changes
        #: The program engine (app.py sets it): events reach the enrolled 2030.5 groups in
        #: the same unit of work that stores them.
        self.engine = engine
        changes.bus.subscribe(self._on_tags)

    # ---- cache ------------------------------------------------------------------------
    def _on_tags(self, tags: list[str]) -> None:
        if TAG in tags or EVERYTHING in tags:
            self._generation += 1
            self._clear_cache()

    def _clear_cache(self) -> None:
        self._cache.clear()
        self.cache_bytes = 0

    def _remember(self, key: tuple[Any, ...], generation: int, body: bytes) -> None:
        if generation == self._generation:
            size = len(body) + 200
            if (
                len(self._cache) >= _CACHE_MAX
                or self.cache_bytes + size > self.settings.cache_max_bytes
            ):
                self._clear_cache()  # distinct queries cannot grow memory past the caps
            previous = self._cache.get(key)
            if previous is not None:
                self.cache_bytes -= len(previous) + 200
            self._cache[key] = body
            self.cache_bytes += size

    # ---- access -----------------------------------------------------------------------
    @staticmethod
    def require(principal: Principal, scope: str) -> None:
        if not principal.has(scope):
            raise Forbidden(f"this operation needs the {scope} scope")

    async def view(self, s: Session, principal: Principal) -> VenView | None:
        """None for a BL; for a VEN its vens and the targets granted to them and theirs."""
        if principal.is_bl:
            return None
        vens = await oadr.query(s, VEN, client_ids=[principal.client_id])
        ven_ids = {v.id for v in vens}
        targets = {t for v in vens for t in v.targets}
        if ven_ids:
            for resource in await oadr.query(s, RESOURCE, ven_ids=sorted(ven_ids)):
                targets.update(resource.targets)
        return VenView(principal.client_id, frozenset(ven_ids), frozenset(targets))

    async def _program_of(self, s: Session, obj: StoredObject) -> rules.Obj | None:
        if obj.kind != EVENT or not obj.program_id:
            return None
        program = await oadr.get(s, PROGRAM, obj.program_id)
        return None if program is None else rule_obj(program)

    async def _visible(self, s: Session, obj: StoredObject, view: VenView | None) -> bool:
        if view is None:
            return True
        return rules.visible(rule_obj(obj), view, await self._program_of(s, obj))

    def render(
        self, obj: StoredObject, view: VenView | None, asked: Sequence[str] = ()
    ) -> dict[str, Any]:
        return render_object(obj, view, asked)

    # ---- reads ------------------------------------------------------------------------
    def cached_list(self, principal: Principal, kind: str, raw_query: str) -> bytes | None:
        """The hot path: a poll repeating an earlier one, found by its raw query string
        before any parsing (stored only after the scope check passed for this principal)."""
        return self._cache.get((principal, kind, "?" + raw_query))

    async def list_objects(
        self, principal: Principal, kind: str, query: ListQuery, raw_query: str | None = None
    ) -> bytes:
        self.require(principal, READ_SCOPE[kind])
        if query.limit > MAX_LIMIT or query.limit < 0 or query.skip < 0:
            raise BadRequest(f"skip must be >= 0 and limit 0..{MAX_LIMIT}")
        key = (principal, kind, query)
        cacheable = query.active is None
        if cacheable:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        generation = self._generation
        async with self.store.transaction() as s:
            view = await self.view(s, principal)
            found, paged = await self._select(s, kind, query, view)
        page = found if paged else found[query.skip : query.skip + query.limit]
        body = dumps([self.render(o, view, query.targets) for o in page])
        if cacheable:
            self._remember(key, generation, body)
            if raw_query is not None:
                self._remember((principal, kind, "?" + raw_query), generation, body)
        return body

    async def _select(
        self, s: Session, kind: str, q: ListQuery, view: VenView | None
    ) -> tuple[list[StoredObject], bool]:
        """The objects a list shows, and whether the database already applied skip/limit
        (it does whenever no rule below needs to look at each object)."""
        own = None if view is None else [view.client_id]
        granted = None if view is None else view.targets
        if kind == PROGRAM:
            if view is None and not q.targets:
                return await oadr.query(s, PROGRAM, offset=q.skip, limit=q.limit), True
            objs = await oadr.query(s, PROGRAM)
            return [
                o
                for o in objs
                if rules.visible(rule_obj(o), view)
                and rules.query_targets_match(o.targets, q.targets, granted)
            ], False
        if kind == EVENT:
            if view is None and not q.targets and not q.active:
                return await oadr.query(
                    s, EVENT, program_id=q.program_id, offset=q.skip, limit=q.limit
                ), True
            objs = await oadr.query(s, EVENT, program_id=q.program_id)
            programs = {
                p.id: rule_obj(p)
                for p in (
                    await oadr.query(s, PROGRAM)
                    if q.program_id is None
                    else [x for x in [await oadr.get(s, PROGRAM, q.program_id)] if x]
                )
            }
            now = self.clock.now()
            return [
                o
                for o in objs
                if rules.visible(rule_obj(o), view, programs.get(o.program_id or ""))
                and rules.query_targets_match(o.targets, q.targets, granted)
                and (not q.active or rules.is_active(o.body, now))
            ], False
        if kind == REPORT:  # clientName is the indexed name column
            found = await oadr.query(
                s,
                REPORT,
                program_id=q.program_id,
                event_id=q.event_id,
                client_ids=own,
                name=q.client_name,
                offset=q.skip,
                limit=q.limit,
            )
            return found, True
        if kind == SUBSCRIPTION:
            if not q.objects:
                found = await oadr.query(
                    s,
                    SUBSCRIPTION,
                    program_id=q.program_id,
                    client_ids=own,
                    name=q.client_name,
                    offset=q.skip,
                    limit=q.limit,
                )
                return found, True
            objs = await oadr.query(
                s, SUBSCRIPTION, program_id=q.program_id, client_ids=own, name=q.client_name
            )
            return [o for o in objs if _subscribes_to_any(o, q.objects)], False
        if kind == VEN:
            if not q.targets:
                return await oadr.query(
                    s, VEN, client_ids=own, name=q.ven_name, offset=q.skip, limit=q.limit
                ), True
            objs = await oadr.query(s, VEN, client_ids=own, name=q.ven_name)
            return [o for o in objs if rules.query_targets_match(o.targets, q.targets)], False
        ven_ids = None if q.ven_id is None else [q.ven_id]
        if view is None and not q.targets:
            found = await oadr.query(
                s, RESOURCE, name=q.resource_name, ven_ids=ven_ids, offset=q.skip, limit=q.limit
            )
            return found, True
        objs = await oadr.query(s, RESOURCE, name=q.resource_name, ven_ids=ven_ids)
        return [
            o
            for o in objs
            if rules.visible(rule_obj(o), view) and rules.query_targets_match(o.targets, q.targets)
        ], False

    async def get_object(self, principal: Principal, kind: str, object_id: str) -> bytes:
        self.require(principal, READ_SCOPE[kind])
        key = (principal, kind, object_id)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        generation = self._generation
        async with self.store.transaction() as s:
            view = await self.view(s, principal)
            obj = await self._visible_object(s, kind, object_id, view)
        body = dumps(self.render(obj, view))
        self._remember(key, generation, body)
        return body

    async def _visible_object(
        self, s: Session, kind: str, object_id: str, view: VenView | None, lock: bool = False
    ) -> StoredObject:
        obj = await oadr.get(s, kind, object_id, lock=lock)
        if obj is None or not await self._visible(s, obj, view):
            raise NotFound(f"no {kind.lower()} {object_id!r}")
        return obj

    # ---- writes -----------------------------------------------------------------------
    async def create(
        self,
        principal: Principal,
        kind: str,
        raw: bytes,
        *,
        force: bool = False,
        audit: Audit | None = None,
    ) -> bytes:
        """`force`: an event the utility calls against its program's terms (admin API);
        `audit`: the console operator making the change (the entry is part of the change)."""
        self.require(principal, WRITE_SCOPE[kind])
        request = models.parse(kind, raw, principal.role)
        await self._check_callbacks(kind, request)
        now = self.clock.now()
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            view = await self.view(s, principal)
            obj = await self._build(s, principal, view, kind, request, None, now)
            stored = await oadr.insert(s, obj)
            tx.record(OadrObjectChanged(kind, stored.id, CREATE, stored))
            if audit is not None:
                await self._audit(s, audit, stored.id, now, None, self.render(stored, view))
            if kind == EVENT and self.engine is not None:
                await self.engine.event_written(tx, stored, force=force)
        return dumps(self.render(stored, view))

    async def update(
        self,
        principal: Principal,
        kind: str,
        object_id: str,
        raw: bytes,
        *,
        force: bool = False,
        audit: Audit | None = None,
    ) -> bytes:
        self.require(principal, WRITE_SCOPE[kind])
        request = models.parse(kind, raw, principal.role)
        if kind == SUBSCRIPTION:  # no echo probe on behalf of someone who may not write it
            async with self.store.transaction() as s:
                await self._visible_object(s, kind, object_id, await self.view(s, principal))
            await self._check_callbacks(kind, request)
        now = self.clock.now()
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            view = await self.view(s, principal)
            existing = await self._visible_object(s, kind, object_id, view, lock=True)
            obj = await self._build(s, principal, view, kind, request, existing, now)
            stored = await oadr.replace(s, obj)
            tx.record(OadrObjectChanged(kind, stored.id, UPDATE, stored))
            if audit is not None:
                before, after = self.render(existing, view), self.render(stored, view)
                await self._audit(s, audit, stored.id, now, before, after)
            if kind == EVENT and self.engine is not None:
                await self.engine.event_written(tx, stored, previous=existing, force=force)
        return dumps(self.render(stored, view))

    async def delete(
        self, principal: Principal, kind: str, object_id: str, *, audit: Audit | None = None
    ) -> bytes:
        """Remove from the OpenADR view (rows stay as history); programs take their events
        along, vens their resources."""
        self.require(principal, WRITE_SCOPE[kind])
        now = self.clock.now()
        async with self.changes.unit_of_work() as tx:
            s = tx.session
            view = await self.view(s, principal)
            existing = await self._visible_object(s, kind, object_id, view, lock=True)
            doomed = [existing]
            if kind == PROGRAM:
                doomed += await oadr.query(s, EVENT, program_id=existing.id)
            if kind == VEN:
                doomed += await oadr.query(s, RESOURCE, ven_ids=[existing.id])
            # each as it was before it was marked deleted: what its subscribers are sent
            tx.record(*(OadrObjectChanged(o.kind, o.id, DELETE, o) for o in doomed))
            await oadr.mark_deleted(s, [o.id for o in doomed], now)
            if audit is not None:
                after = {"deleted": True, "with": [o.id for o in doomed[1:]]}
                await self._audit(s, audit, existing.id, now, self.render(existing, view), after)
            if self.engine is not None:
                for gone in doomed:
                    if gone.kind == EVENT:
                        await self.engine.event_deleted(tx, gone)
        return dumps(self.render(existing, view))

    @staticmethod
    async def _audit(
        s: Session, audit: Audit, target: str, now: float, before: Any, after: Any
    ) -> None:
        """The audit entry, in the change's transaction: written before the engine plans
        the event, so anything that fails after it rolls both back."""
        await operators_store.insert_audit(
            s, int(now), audit.operator, audit.action, target, before, after
        )

    async def _check_callbacks(self, kind: str, request: Any) -> None:
        if kind != SUBSCRIPTION:
            return
        assert isinstance(request, models.SubscriptionRequest)
        for url in dict.fromkeys(op.callbackUrl for op in request.objectOperations):
            await self.checker.check(url)

    async def _build(
        self,
        s: Session,
        principal: Principal,
        view: VenView | None,
        kind: str,
        request: Any,
        existing: StoredObject | None,
        now: float,
    ) -> StoredObject:
        """The object to store for a request, with the columns the queries use."""
        body: dict[str, Any] = request.wire()
        new_id = existing.id if existing else secrets.token_hex(12)
        obj = StoredObject(
            id=new_id,
            kind=kind,
            body=body,
            targets=list(body.get("targets", [])),
            created_at=existing.created_at if existing else now,
            modified_at=now,
        )
        if kind == PROGRAM:
            obj.program_id = new_id
            obj.name = obj.unique_key = body["programName"]
        elif kind == EVENT:
            program = await oadr.get(s, PROGRAM, body["programID"])
            if program is None or not rules.visible(rule_obj(program), view):
                raise Conflict(f"programID {body['programID']!r} names no program")
            obj.program_id = program.id
            obj.name = body.get("eventName")
        elif kind == REPORT:
            event = await oadr.get(s, EVENT, body["eventID"])
            if event is None or not await self._visible(s, event, view):
                raise Conflict(f"eventID {body['eventID']!r} names no event")
            owner = existing.client_id if existing else principal.client_id
            body["clientID"] = owner
            obj.event_id, obj.program_id, obj.client_id = event.id, event.program_id, owner
            obj.name = body["clientName"]
            obj.targets = []
        elif kind == SUBSCRIPTION:
            program_id = body.get("programID")
            if program_id is not None:
                program = await oadr.get(s, PROGRAM, program_id)
                if program is None or not rules.visible(rule_obj(program), view):
                    raise Conflict(f"programID {program_id!r} names no program")
            owner = existing.client_id if existing else principal.client_id
            role = existing.body.get("_role") if existing else principal.role
            body["clientID"] = owner
            body["_role"] = role
            obj.program_id, obj.client_id, obj.name = program_id, owner, body["clientName"]
        elif kind == VEN:
            obj = self._ven(principal, body, obj, existing)
        else:
            obj = await self._resource(s, principal, view, body, obj, existing)
        return obj

    def _ven(
        self,
        principal: Principal,
        body: dict[str, Any],
        obj: StoredObject,
        existing: StoredObject | None,
    ) -> StoredObject:
        kind_sent = body.pop("objectType")
        if principal.is_bl:
            if kind_sent != "BL_VEN_REQUEST":
                raise BadRequest("a BL client sends objectType BL_VEN_REQUEST with clientID")
        else:
            if kind_sent != "VEN_VEN_REQUEST":
                raise Forbidden("only BL clients set a ven's clientID and targets")
            body["clientID"] = existing.client_id if existing else principal.client_id
            kept = existing.targets if existing else []
            if kept:
                body["targets"] = kept
        obj.body = {
            k: body[k] for k in ("venName", "clientID", "targets", "attributes") if k in body
        }
        obj.targets = list(obj.body.get("targets", []))
        obj.client_id = obj.body["clientID"]
        obj.name = obj.unique_key = obj.body["venName"]
        return obj

    async def _resource(
        self,
        s: Session,
        principal: Principal,
        view: VenView | None,
        body: dict[str, Any],
        obj: StoredObject,
        existing: StoredObject | None,
    ) -> StoredObject:
        kind_sent = body.pop("objectType")
        ven = await oadr.get(s, VEN, body["venID"])
        if ven is None or (view is not None and ven.id not in view.ven_ids):
            raise NotFound(f"venID {body['venID']!r} names no ven")
        if principal.is_bl:
            if kind_sent != "BL_RESOURCE_REQUEST":
                raise BadRequest("a BL client sends objectType BL_RESOURCE_REQUEST with clientID")
        else:
            if kind_sent != "VEN_RESOURCE_REQUEST":
                raise Forbidden("only BL clients set a resource's clientID and targets")
            body["clientID"] = existing.client_id if existing else principal.client_id
            kept = existing.targets if existing else []
            if kept:
                body["targets"] = kept
        keys = ("resourceName", "venID", "clientID", "targets", "attributes")
        obj.body = {k: body[k] for k in keys if k in body}
        obj.targets = list(obj.body.get("targets", []))
        obj.client_id = obj.body["clientID"]
        obj.ven_id = ven.id
        obj.name = obj.body["resourceName"]
        obj.unique_key = f"{ven.id}/{obj.name}"
        return obj

    # ---- notifiers and MQTT topics ------------------------------------------------------
    def notifiers(self) -> bytes:
        body: dict[str, Any] = {"WEBHOOK": True}
        if self.mqtt_enabled:
            body["MQTT"] = {
                "URIS": [self.settings.vtn_mqtt_url],
                "serialization": "JSON",
                "authentication": {"method": "ANONYMOUS"},
            }
        return dumps(body)

    async def topics(self, principal: Principal, family: str, object_id: str | None) -> bytes:
        """Topic names for one of the /notifiers/mqtt/topics/... endpoints.

        A BL gets the topics carrying every object; a VEN gets its own per-VEN topics, where
        only what it may see is published (with its view of the targets).
        """
        if not self.mqtt_enabled:
            raise NotFound("MQTT notifications are not configured on this VTN")
        async with self.store.transaction() as s:
            view = await self.view(s, principal)
            if family.startswith("program") and object_id is not None:
                await self._visible_object(s, PROGRAM, object_id, view)
            if family.startswith("ven/") or family == "ven":
                assert object_id is not None
                await self._visible_object(s, VEN, object_id, view)
        topics = self._topics_for(family, object_id, view)
        return dumps({"topics": topics.as_json()})

    def _topics_for(self, family: str, object_id: str | None, view: VenView | None) -> rules.Topics:
        p = self.prefix
        per_ven_kind = {
            "programs": PROGRAM,
            "program": PROGRAM,
            "program/events": EVENT,
            "events": EVENT,
            "reports": REPORT,
            "subscriptions": SUBSCRIPTION,
            "resources": RESOURCE,
        }
        if family == "ven" or family.startswith("ven/"):
            assert object_id is not None
            sub = {"ven": None, "ven/events": EVENT, "ven/programs": PROGRAM}.get(family, RESOURCE)
            return rules.ven_topics(p, object_id, sub)
        if view is not None:  # a VEN: its private topics
            if not view.ven_ids:
                raise NotFound("this client has no ven yet: create one with POST /vens")
            own = sorted(view.ven_ids)[0]
            if family == "vens":
                return rules.ven_topics(p, own)
            return rules.ven_topics(p, own, per_ven_kind[family])
        if family == "program":
            assert object_id is not None
            return rules.program_topics(p, object_id)
        if family == "program/events":
            assert object_id is not None
            return rules.program_event_topics(p, object_id)
        kind = {"vens": VEN, **per_ven_kind}[family]
        return rules.kind_topics(p, kind)


def _subscribes_to_any(obj: StoredObject, objects: Sequence[str]) -> bool:
    return any(
        kind in op.get("objects", [])
        for op in obj.body.get("objectOperations", [])
        for kind in objects
    )
