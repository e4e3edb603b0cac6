"""Rendering Subscription, SubscriptionList and Notification (IEEE 2030.5 §9 pub/sub)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from xml.sax.saxutils import escape

from lxml import etree

from csip.domain.subscriptions import Subscription
from csip.sep2.schema import SEP_NS
from csip.sep2.xml import E, serialize

XSI = "http://www.w3.org/2001/XMLSchema-instance"

#: Notification.status values (sep.xsd).
STATUS_DEFAULT = 0
STATUS_CANCELLED_DELETED = 4


def _subscription_element(subscription: Subscription) -> etree._Element:
    element: etree._Element = E.Subscription(
        E.subscribedResource(subscription.subscribed_resource),
        E.encoding(str(subscription.encoding)),
        E.level(subscription.level or "-S1-L1-R1"),
        E.limit(str(subscription.limit)),
        E.notificationURI(subscription.notification_uri),
        href=subscription.href,
    )
    return element


def subscription(subscription: Subscription) -> bytes:
    return serialize(_subscription_element(subscription))


def subscription_list(href: str, total: int, page: Sequence[Subscription], poll_rate: int) -> bytes:
    element = E.SubscriptionList(
        *(_subscription_element(s) for s in page),
        href=href,
        all=str(total),
        results=str(len(page)),
        pollRate=str(poll_rate),
    )
    return serialize(element)


@lru_cache(maxsize=512)
def _resource_fragment(resource: bytes) -> bytes:
    """A rendered resource as Notification's xsi:typed Resource element (no XML declaration);
    made once per distinct rendering, since thousands of subscribers share one."""
    inner = etree.fromstring(resource)
    type_name = etree.QName(inner).localname
    inner.tag = f"{{{SEP_NS}}}Resource"
    inner.set(f"{{{XSI}}}type", type_name)
    return etree.tostring(inner, encoding="UTF-8", xml_declaration=False)


def fast_notification(subscribed_resource: str, subscription_uri: str, resource: bytes) -> bytes:
    """notification() for the delivery hot path: the shared Resource fragment is spliced in
    as bytes rather than parsed and serialized per subscriber."""
    return b"".join(
        (
            f'<Notification xmlns="{SEP_NS}"><subscribedResource>'.encode(),
            escape(subscribed_resource).encode(),
            b"</subscribedResource>",
            _resource_fragment(resource),
            f"<status>{STATUS_DEFAULT}</status><subscriptionURI>".encode(),
            escape(subscription_uri).encode(),
            b"</subscriptionURI></Notification>",
        )
    )


def notification(
    subscribed_resource: str,
    subscription_uri: str,
    resource: bytes | None,
    status: int = STATUS_DEFAULT,
) -> bytes:
    """A Notification carrying the resource as xsi:type'd Resource (or none when cancelled)."""
    children = [E.subscribedResource(subscribed_resource)]
    if resource is not None:
        inner = etree.fromstring(resource)
        type_name = etree.QName(inner).localname
        inner.tag = f"{{{SEP_NS}}}Resource"
        inner.set(f"{{{XSI}}}type", type_name)
        children.append(inner)
    children += [E.status(str(status)), E.subscriptionURI(subscription_uri)]
    element = E.Notification(*children)
    return serialize(element)
