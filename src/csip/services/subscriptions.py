"""2030.5 subscriptions and notifications (IEEE 2030.5 §9; CSIP IG §6.5; CORE-018/019).

A client subscribes under its EndDevice to a resource the standard makes subscribable; a change
to that resource writes a notification intent to the outbox in the change's own transaction
(store.subscriptions.notify_in). The outbox worker hands each intent to `Sep2Notifier`, which
renders the resource as the subscriber would GET it now (limited to `limit` entries), wraps it
in a Notification and POSTs it over mutual TLS with the server's own certificate. Deleting an
EndDevice ends its subscriptions with a "subscription cancelled, resource deleted" notification.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from csip.domain.changes import SubscriptionsChanged
from csip.domain.devices import EndDevice, Principal, PrincipalKind
from csip.domain.paging import Page
from csip.domain.subscriptions import (
    HostAllowList,
    Subscription,
    check_notification_uri,
    check_resolved,
    host_in,
)
from csip.errors import CsipError, Forbidden, InvalidValues, NotFound
from csip.sep2 import notify_render
from csip.sep2.xml import CONTENT_TYPE, tag, text
from csip.services.bus import EVERYTHING
from csip.services.changes import NOTIFY_HOSTS
from csip.services.messaging import MessagingService
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

#: Settings key prefix of the per-aggregator allow-lists.
ALLOW_LIST_PREFIX = "notify_hosts."


class ConditionNotSupported(CsipError):
    """Conditional subscriptions are not supported (2030.5 Error reasonCode 3)."""

    status = 400
    reason_code = 3


#: The resources csip notifies about: path pattern -> resource type.
SUBSCRIBABLE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/edev()$"), "EndDeviceList"),
    (re.compile(r"^/edev/(\d+)$"), "EndDevice"),
    (re.compile(r"^/edev/(\d+)/fsa$"), "FunctionSetAssignmentsList"),
    (re.compile(r"^/fsa/(\d+)/derp$"), "DERProgramList"),
    (re.compile(r"^/derp/(\d+)/derc$"), "DERControlList"),
    (re.compile(r"^/derp/(\d+)/dderc$"), "DefaultDERControl"),
    (re.compile(r"^/fsa/(\d+)/msg$"), "MessagingProgramList"),
    (re.compile(r"^/msg/(\d+)/txt$"), "TextMessageList"),
)


async def _getaddrinfo(host: str, port: int) -> list[Any]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def cancellations(
    store: SubscriptionStore, public_base: str, device_id: int
) -> list[OutboxMessage]:
    """The final "resource deleted" notifications for every subscription of a device (queued
    in the transaction that deletes it)."""
    return [
        OutboxMessage(
            kind=KIND,
            target=s.notification_uri,
            body=notify_render.notification(
                s.subscribed_resource,
                public_base + s.href,
                None,
                notify_render.STATUS_CANCELLED_DELETED,
            ),
            content_type=CONTENT_TYPE,
        )
        for s in await store.of_device(device_id)
    ]


class SubscriptionService:
    def __init__(
        self, programs: ProgramService, public_base: str, messaging: MessagingService | None = None
    ) -> None:
        self.programs = programs
        self.messaging = messaging or MessagingService(programs)
        self.sep2 = programs.sep2
        self.store = SubscriptionStore(self.sep2.store)
        #: Absolute base of subscriptionURI (2030.5 wants an absolute URI).
        self.public_base = public_base
        #: Ids of the subscriptions that exist, so delivery needs no query per notification;
        #: dropped whenever one is created or deleted (in any worker, through the bus).
        self._existing: set[int] | None = None
        #: getaddrinfo for notification hosts (tests substitute a fixed table).
        self.resolve: Callable[[str, int], Awaitable[list[Any]]] = _getaddrinfo
        #: aggregator id -> its notification host allow-list (admin API), read once.
        self._lists: dict[int, HostAllowList] | None = None
        self.sep2.bus.subscribe(self._on_invalidate)

    def _on_invalidate(self, tags: list[str]) -> None:
        if any(name.startswith("subs:") or name == EVERYTHING for name in tags):
            self._existing = None
        if NOTIFY_HOSTS in tags or EVERYTHING in tags:
            self._lists = None

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
            if kind == "EndDeviceList":  # the subscriber's own list (an aggregator's fleet)
                return await self.sep2.end_device_list(principal, page)
            ident = int(match.group(1))
            if kind == "EndDevice":
                return await self.sep2.device_resource(principal, ident, "")
            if kind == "FunctionSetAssignmentsList":
                return await self.programs.fsa_list(principal, ident, page)
            if kind == "DERProgramList":
                return await self.programs.program_list(principal, ident, page)
            if kind == "DERControlList":
                return await self.programs.control_list(principal, ident, page)
            if kind == "MessagingProgramList":
                return await self.messaging.program_list(principal, ident, page)
            if kind == "TextMessageList":
                return await self.messaging.message_list(principal, ident, page)
            return await self.programs.default_control(principal, ident)
        kinds = ", ".join(kind for _, kind in SUBSCRIBABLE)
        raise InvalidValues(f"{path} is not subscribable here (subscribable: {kinds})")

    async def _holder(self, principal: Principal, device_id: int) -> EndDevice:
        """The EndDevice whose SubscriptionList this is. CSIP-AUS aggregator model: an
        aggregator's subscriptions, for any resource of the devices it manages, are held
        under its own certificate's EndDevice only (a client finding a second SubscriptionList
        for the aggregator refuses to go on), so its managed devices have none (404)."""
        device = await self.sep2.accessible_device(principal, device_id)
        managed = device.aggregator_id is not None and not device.aggregator_self
        if managed and self.sep2.settings.profile == "csip-aus":
            raise NotFound(
                f"no SubscriptionList under /edev/{device_id}: an aggregator's subscriptions "
                "are held under its own EndDevice"
            )
        return device

    async def create(self, principal: Principal, device_id: int, body: bytes) -> Subscription:
        device = await self._holder(principal, device_id)
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
        await self.check_target(principal, uri)
        subscription = Subscription(
            0, device.id, path, uri, limit, 0, text(root, "level") or "", self.sep2.clock.now_int()
        )
        async with self.sep2.changes.unit_of_work() as tx:
            created = await insert_subscription(tx.session, subscription)
            tx.record(SubscriptionsChanged(device.id))
        return created

    # ---- where notifications may go ------------------------------------------------------
    async def allow_list(self, aggregator_id: int) -> HostAllowList | None:
        """The aggregator's notification host allow-list (admin API), or None."""
        lists = await self._allow_lists()
        return lists.get(aggregator_id)

    async def _allow_lists(self) -> dict[int, HostAllowList]:
        if self._lists is None:
            stored = await self.sep2.store.get_settings(ALLOW_LIST_PREFIX)
            self._lists = {
                int(key): HostAllowList(tuple(value["hosts"]), bool(value.get("allow_http")))
                for key, value in stored.items()
                if value and value.get("hosts")
            }
        return self._lists

    async def admitted_hosts(self) -> frozenset[str]:
        """Every host some aggregator's allow-list names: delivery admits these even when
        internal (the utility put them there)."""
        return frozenset(h for a in (await self._allow_lists()).values() for h in a.hosts)

    async def check_target(self, principal: Principal, uri: str) -> None:
        """Where this client may have notifications sent: its aggregator's allow-list when it
        has one (and nowhere else), otherwise the global notification_allow_* rules. Never a
        non-unicast address (issue 9 items 10 and 19)."""
        settings = self.sep2.settings
        allowed = None
        if principal.kind is PrincipalKind.AGGREGATOR and principal.aggregator_id is not None:
            allowed = await self.allow_list(principal.aggregator_id)
        if allowed is not None:
            host = urlsplit(uri).hostname or ""
            if not allowed.admits(host):
                raise InvalidValues(f"notificationURI host {host} is not on this aggregator's list")
            allow_http = allowed.allow_http or settings.notification_allow_http
            check_notification_uri(uri, allow_http=allow_http, allow_private=True)
            await self._check_host(uri, True)
            return
        check_notification_uri(
            uri,
            allow_http=settings.notification_allow_http,
            allow_private=settings.notification_allow_private,
        )
        await self._check_host(uri, settings.notification_allow_private)

    async def _check_host(self, uri: str, allow_private: bool) -> None:
        """A host name is resolved now: one that reaches a multicast, broadcast, unspecified or
        reserved address is refused. A name that does not resolve (yet) is accepted: delivery
        resolves it again, with retries, and drops internal addresses there."""
        host = urlsplit(uri).hostname or ""
        try:
            ipaddress.ip_address(host.split("%")[0])
            return  # a literal: checked already
        except ValueError:
            pass
        try:
            async with asyncio.timeout(5.0):
                infos = await self.resolve(host, 443)
        except (OSError, TimeoutError):
            return
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        check_resolved(host, addresses, allow_private=allow_private)

    async def get(self, principal: Principal, device_id: int, subscription_id: int) -> bytes:
        await self._holder(principal, device_id)
        found = await self.store.get(subscription_id)
        if found is None or found.end_device_id != device_id:
            raise NotFound(f"no subscription {subscription_id}")
        return notify_render.subscription(found)

    async def page(self, principal: Principal, device_id: int, page: Page) -> bytes:
        device = await self._holder(principal, device_id)
        total, found = await self.store.page(device.id, page.start, page.limit)
        rates = await self.sep2.poll_rates()
        href = f"{device.href}/sub"
        return notify_render.subscription_list(href, total, found, rates["EndDeviceList"])

    async def delete(self, principal: Principal, device_id: int, subscription_id: int) -> None:
        await self._holder(principal, device_id)
        found = await self.store.get(subscription_id)
        if found is None or found.end_device_id != device_id:
            raise NotFound(f"no subscription {subscription_id}")
        async with self.sep2.changes.unit_of_work() as tx:
            await delete_subscription(tx.session, subscription_id)
            tx.record(SubscriptionsChanged(device_id))

    async def cancellations(self, device_id: int) -> list[OutboxMessage]:
        """The final "resource deleted" notifications for every subscription of a device."""
        return await cancellations(self.store, self.public_base, device_id)

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
        #: For hosts on an aggregator's allow-list: no internal-address filter.
        self._listed: aiohttp.ClientSession | None = None

    def session(self, listed: bool = False) -> aiohttp.ClientSession:
        current = self._listed if listed else self._session
        if current is None or current.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.context,
                limit=200,
                keepalive_timeout=60,
                resolver=None if listed else self.resolver,
            )
            current = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            if listed:
                self._listed = current
            else:
                self._session = current
        return current

    async def __call__(self, message: OutboxMessage) -> None:
        listed = False
        if self.resolver is not None:
            host = urlsplit(message.target).hostname or ""
            listed = host_in(host, await self.subscriptions.admitted_hosts())
            if not listed:
                self.resolver.check_literal(message.target)
        body = await self.subscriptions.notification_body(message)
        if body is None:
            return  # the subscription was deleted meanwhile: nothing left to tell
        headers = {"Content-Type": CONTENT_TYPE}
        async with self.session(listed).post(
            message.target, data=body, headers=headers, allow_redirects=False
        ) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise RuntimeError(f"HTTP {response.status} from {message.target}")

    async def close(self) -> None:
        for session in (self._session, self._listed):
            if session is not None:
                await session.close()
