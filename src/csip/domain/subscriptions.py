"""2030.5 subscriptions: what they are and where the server may send notifications."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from csip.errors import InvalidValues


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    end_device_id: int
    subscribed_resource: str
    notification_uri: str
    limit: int
    encoding: int
    level: str
    created_at: int

    @property
    def href(self) -> str:
        return f"/edev/{self.end_device_id}/sub/{self.id}"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def non_unicast(address: IPAddress) -> str | None:
    """Why a notification can never be delivered to this address (it is not one host's), or
    None: multicast, broadcast, unspecified and reserved addresses. Refused at subscription
    time in every mode, labs included: accepting them only to drop every notification at
    delivery leaves the subscriber waiting for ever (issue 9 item 19)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_multicast:
        return "multicast"
    if address == _BROADCAST:
        return "broadcast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_reserved:
        return "reserved"
    return None


def check_resolved(host: str, addresses: list[IPAddress], *, allow_private: bool) -> None:
    """The addresses a notificationURI's host name resolves to, when subscribing: every one
    must be unicast (and public unless the config allows private targets)."""
    for address in addresses:
        kind = non_unicast(address)
        if kind is not None:
            raise InvalidValues(f"notificationURI host {host} resolves to a {kind} address")
        if not allow_private and not address.is_global:
            raise InvalidValues(f"notificationURI host {host} resolves to a non-public address")


def check_notification_uri(uri: str, *, allow_http: bool, allow_private: bool) -> None:
    """https only, and never loopback or private targets, unless the config allows (labs).

    The server POSTs wherever a subscriber says: without these checks any device could make it
    probe the utility's internal network.
    """
    parts = urlsplit(uri)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise InvalidValues(f"notificationURI must be https, not {parts.scheme or 'relative'}")
    host = parts.hostname
    if not host:
        raise InvalidValues("notificationURI has no host")
    try:
        address: IPAddress | None = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        address = None  # a name: resolved when subscribing and again at each delivery
    if address is not None:
        kind = non_unicast(address)
        if kind is not None:
            raise InvalidValues(f"notificationURI may not target a {kind} address ({address})")
    if allow_private:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidValues("notificationURI may not point at this host")
    if address is None:
        return
    if not address.is_global:
        raise InvalidValues(f"notificationURI may not target a non-public address ({address})")
