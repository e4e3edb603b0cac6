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
    if address.is_loopback:  # ::1 sits in IPv6's reserved ::/8, yet is one host
        return None
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


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """Where one aggregator's notifications may go (admin API; a lab's receiver on its own
    host): host names, IP addresses or networks (CIDR). A listed host is admitted even when
    private or loopback, over http too when `allow_http`; an aggregator with a list may send
    notifications nowhere else. Never a non-unicast address."""

    hosts: tuple[str, ...]
    allow_http: bool = False

    def admits(self, host: str) -> bool:
        return host_in(host, self.hosts)


def host_in(host: str, entries: tuple[str, ...] | frozenset[str]) -> bool:
    """Whether a URI's host is one of these names, addresses or networks."""
    wanted = host.lower().strip("[]").split("%")[0]
    try:
        address: IPAddress | None = ipaddress.ip_address(wanted)
    except ValueError:
        address = None
    for entry in entries:
        entry = entry.lower()
        if entry == wanted:
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def check_allow_list_entry(entry: str) -> str:
    """A host name, an IP address or a network; never a non-unicast one."""
    value = entry.strip().lower()
    if not value or (any(ch in value for ch in " /:?#@") and not _is_address_or_network(value)):
        raise InvalidValues(f"{entry!r} is not a host name, an IP address or a network")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return value
    kind = non_unicast(network.network_address) if network.num_addresses == 1 else None
    if kind is not None or network.is_multicast:
        raise InvalidValues(f"{entry!r} is not a unicast address")
    return value


def _is_address_or_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


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
