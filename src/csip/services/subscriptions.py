"""2030.5 subscriptions and notifications (IEEE 2030.5 §9; CSIP IG §6.5; CORE-018/019).

A client subscribes under its EndDevice to a resource the standard makes subscribable; a change
to that resource writes a notification intent to the outbox in the change's own transaction
(store.subscriptions.notify_in). The outbox worker hands each intent to `Sep2Notifier`, which
renders the resource as the subscriber would GET it now (limited to `limit` entries), wraps it
in a Notification and POSTs it over mutual TLS with the server's own certificate. Deleting an
EndDevice ends its subscriptions with a "subscription cancelled, resource deleted" notification.
"""

from __future__ import annotations

import json
import re
import ssl
from urllib.parse import urlsplit

import aiohttp

from csip.domain.changes import SubscriptionsChanged
from csip.domain.devices import Principal, PrincipalKind
from csip.domain.paging import Page
from csip.domain.subscriptions import Subscription, check_notification_uri
from csip.errors import CsipError, Forbidden, InvalidValues, NotFound
from csip.sep2 import notify_render
from csip.sep2.xml import CONTENT_TYPE, tag, text
from csip.services.programs import ProgramService
from csip.services.vtn_notify import SafeResolver
from csip.store.outbox import OutboxMessage
from csip.store.subscriptions import (
    INTENT_TYPE,
    KIND,
    SubscriptionStore,
    delete_subscription,
    insert_subscription,
)


class ConditionNotSupported(CsipError):
    """Conditional subscriptions are not supported (2030.5 Error reasonCode 3)."""

    status = 400
    reason_code = 3


#: The resources csip notifies about: path pattern -> resource type.
SUBSCRIBABLE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/edev/(\d+)$"), "EndDevice"),
    (re.compile(r"^/edev/(\d+)/fsa$"), "FunctionSetAssignmentsList"),
    (re.compile(r"^/fsa/(\d+)/derp$"), "DERProgramList"),
    (re.compile(r"^/derp/(\d+)/derc$"), "DERControlList"),
    (re.compile(r"^/derp/(\d+)/dderc$"), "DefaultDERControl"),
)


class SubscriptionService:
    def __init__(self, programs: ProgramService) -> None:
        self.programs = programs
        self.sep2 = programs.sep2
        self.store = SubscriptionStore(self.sep2.store)
        #: Absolute base of subscriptionURI (2030.5 wants an absolute URI); set by the server.
        self.public_base = "https://localhost"
        #: Ids of the subscriptions that exist, so delivery needs no query per notification;
        #: dropped whenever one is created or deleted (in any worker, through the bus).
        self._existing: set[int] | None = None
        self.sep2.bus.subscribe(self._on_invalidate)

    def _on_invalidate(self, tags: list[str]) -> None:
        if any(tag.startswith("subs:") or tag == "*" for tag in tags):
            self._existing = None

    async def _exists(self, subscription_id: int) -> bool:
        existing = self._existing
        if existing is None:
            existing = self._existing = await self.store.ids()
        return subscription_id in existing

    async def render_for(self, principal: Principal, path: str, limit: int) -> bytes:
        """The resource as this client would GET it now, lists cut to `limit` entries."""
        page = Page(0, None, max(1, limit))
        for pattern, kind in SUBSCRIBABLE:
            match = pattern.match(path)
            if match is None:
                continue
            ident = int(match.group(1))
            if kind == "EndDevice":
                return await self.sep2.device_resource(principal, ident, "")
            if kind == "FunctionSetAssignmentsList":
                return await self.programs.fsa_list(principal, ident, page)
            if kind == "DERProgramList":
                return await self.programs.program_list(principal, ident, page)
            if kind == "DERControlList":
                return await self.programs.control_list(principal, ident, page)
            return await self.programs.default_control(principal, ident)
        kinds = ", ".join(kind for _, kind in SUBSCRIBABLE)
        raise InvalidValues(f"{path} is not subscribable here (subscribable: {kinds})")

    async def create(self, principal: Principal, device_id: int, body: bytes) -> Subscription:
        device = await self.sep2.accessible_device(principal, device_id)
        root = self.sep2.parse_body(body, "Subscription")
        if root.find(tag("Condition")) is not None:
            raise ConditionNotSupported("conditional subscriptions are not supported")
        if int(text(root, "encoding") or "0") != 0:
            raise InvalidValues("only encoding 0 (application/sep+xml) is supported")
        limit = int(text(root, "limit") or "0")
        if limit < 1:
            raise InvalidValues("limit must be at least 1")
        path = urlsplit(text(root, "subscribedResource") or "").path
        try:
            await self.render_for(principal, path, 1)
        except NotFound as exc:
            raise Forbidden(f"{path} is not a resource this client may read") from exc
        uri = text(root, "notificationURI") or ""
        settings = self.sep2.settings
        check_notification_uri(
            uri,
            allow_http=settings.notification_allow_http,
            allow_private=settings.notification_allow_private,
        )
        subscription = Subscription(
            0, device.id, path, uri, limit, 0, text(root, "level") or "", self.sep2.clock.now_int()
        )
        async with self.sep2.changes.unit_of_work() as tx:
            created = await insert_subscription(tx.session, subscription)
            tx.record(SubscriptionsChanged(device.id))
        return created

    async def get(self, principal: Principal, device_id: int, subscription_id: int) -> bytes:
        await self.sep2.accessible_device(principal, device_id)
        found = await self.store.get(subscription_id)
        if found is None or found.end_device_id != device_id:
            raise NotFound(f"no subscription {subscription_id}")
        return notify_render.subscription(found)

    async def page(self, principal: Principal, device_id: int, page: Page) -> bytes:
        device = await self.sep2.accessible_device(principal, device_id)
        total, found = await self.store.page(device.id, page.start, page.limit)
        rates = await self.sep2.poll_rates()
        href = f"{device.href}/sub"
        return notify_render.subscription_list(href, total, found, rates["EndDeviceList"])

    async def delete(self, principal: Principal, device_id: int, subscription_id: int) -> None:
        await self.sep2.accessible_device(principal, device_id)
        found = await self.store.get(subscription_id)
        if found is None or found.end_device_id != device_id:
            raise NotFound(f"no subscription {subscription_id}")
        async with self.sep2.changes.unit_of_work() as tx:
            await delete_subscription(tx.session, subscription_id)
            tx.record(SubscriptionsChanged(device_id))

    async def cancellations(self, device_id: int) -> list[OutboxMessage]:
        """The final "resource deleted" notifications for every subscription of a device."""
        return [
            OutboxMessage(
                kind=KIND,
                target=s.notification_uri,
                body=notify_render.notification(
                    s.subscribed_resource,
                    self.public_base + s.href,
                    None,
                    notify_render.STATUS_CANCELLED_DELETED,
                ),
                content_type=CONTENT_TYPE,
            )
            for s in await self.store.of_device(device_id)
        ]

    async def notification_body(self, message: OutboxMessage) -> bytes | None:
        """What to POST for an outbox message; None when its subscription is gone."""
        if message.content_type != INTENT_TYPE:
            return message.body  # rendered when written (a cancellation)
        intent = json.loads(message.body)
        subscription_id = int(intent["subscription"])
        if not await self._exists(subscription_id):
            return None
        kind = PrincipalKind.AGGREGATOR if intent["aggregator"] else PrincipalKind.DEVICE
        principal = Principal(intent["lfdi"], intent["sfdi"], kind, intent["aggregator"])
        uri = self.public_base + intent["href"]
        path = intent["resource"]
        try:
            resource = await self.render_for(principal, path, intent["limit"])
        except NotFound:  # the resource went away: the last word on this subscription
            async with self.sep2.changes.unit_of_work() as tx:
                gone = await delete_subscription(tx.session, subscription_id)
                if gone is not None:
                    tx.record(SubscriptionsChanged(gone.end_device_id))
            status = notify_render.STATUS_CANCELLED_DELETED
            return notify_render.notification(path, uri, None, status)
        return notify_render.fast_notification(path, uri, resource)


class Sep2Notifier:
    """The outbox sender for kind "sep2": mutual TLS with the server's certificate, pooled
    keep-alive connections per receiver host (aggregators receive thousands at once)."""

    def __init__(
        self,
        subscriptions: SubscriptionService,
        context: ssl.SSLContext,
        timeout: float = 10.0,
        resolver: SafeResolver | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.context = context
        self.timeout = timeout
        #: Drops internal addresses at delivery (a hostname checked when subscribing may be
        #: re-pointed inside later); None in lab mode (notification_allow_private).
        self.resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.context, limit=200, keepalive_timeout=60, resolver=self.resolver
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def __call__(self, message: OutboxMessage) -> None:
        if self.resolver is not None:
            self.resolver.check_literal(message.target)
        body = await self.subscriptions.notification_body(message)
        if body is None:
            return  # the subscription was deleted meanwhile: nothing left to tell
        headers = {"Content-Type": CONTENT_TYPE}
        async with self.session().post(
            message.target, data=body, headers=headers, allow_redirects=False
        ) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise RuntimeError(f"HTTP {response.status} from {message.target}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
