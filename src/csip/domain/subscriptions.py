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
    if allow_private:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidValues("notificationURI may not point at this host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: resolved by the delivery client at send time
    if not address.is_global:
        raise InvalidValues(f"notificationURI may not target a non-public address ({address})")
