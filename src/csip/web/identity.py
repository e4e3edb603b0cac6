"""Who is on the other end: the client certificate, read once per TLS connection.

OpenSSL has already checked the chain, dates and CA constraints at the handshake. Here we
compute LFDI/SFDI and the 2030.5 leaf rules (P-256 key, policy OIDs, HardwareModuleName)
once, when the connection's first request arrives, and remember them for the connection's
lifetime (weakly keyed on its SSLObject). Behind a TLS-terminating proxy the certificate can
come from a header, but only when the peer address is a configured trusted proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote
from weakref import WeakKeyDictionary

from aiohttp import web
from cryptography import x509

from csip.pki.checks import check_leaf
from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi


@dataclass(frozen=True, slots=True)
class ConnectionIdentity:
    lfdi: str
    sfdi: int
    #: 2030.5 leaf-rule violations; non-empty means every request gets 403.
    problems: tuple[str, ...]
    has_hardware_module_name: bool


@lru_cache(maxsize=65536)
def identity_from_der(der: bytes) -> ConnectionIdentity:
    """LFDI, SFDI and the leaf rules of one certificate; remembered by its DER bytes, so a
    client reconnecting (with or without session resumption) costs no certificate parsing."""
    lfdi = lfdi_from_cert_der(der)
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ConnectionIdentity(lfdi, sfdi_from_lfdi(lfdi), ("unparseable certificate",), False)
    check = check_leaf(cert, require_hardware_module_name=False)
    return ConnectionIdentity(
        lfdi, sfdi_from_lfdi(lfdi), tuple(check.problems), check.hw_serial is not None
    )


class IdentityResolver:
    def __init__(self, trusted_proxies: list[str], header: str) -> None:
        self._by_connection: WeakKeyDictionary[ssl.SSLObject, ConnectionIdentity] = (
            WeakKeyDictionary()
        )
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self._header = header

    def _from_proxy(self, request: web.Request) -> ConnectionIdentity | None:
        if not self._proxies or request.remote is None:
            return None
        value = request.headers.get(self._header)
        if not value:
            return None
        try:
            address = ipaddress.ip_address(request.remote)
        except ValueError:
            return None
        if not any(address in network for network in self._proxies):
            return None
        try:
            cert = x509.load_pem_x509_certificate(unquote(value).encode())
        except ValueError:
            return None
        from cryptography.hazmat.primitives.serialization import Encoding

        return identity_from_der(cert.public_bytes(Encoding.DER))

    def resolve(self, request: web.Request) -> ConnectionIdentity | None:
        """The identity of this request's client, or None when it presented none."""
        if self._proxies:
            forwarded = self._from_proxy(request)
            if forwarded is not None:
                return forwarded
        transport = request.transport
        if transport is None:
            return None
        return self.of_transport(transport)

    def of_transport(self, transport: asyncio.BaseTransport) -> ConnectionIdentity | None:
        """The identity of a TLS connection's client certificate, computed on its first
        request and remembered for the connection (for the app's later requests)."""
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        identity = self._by_connection.get(ssl_object)
        if identity is None:
            identity = self.of_certificate(ssl_object)
            if identity is not None:
                self._by_connection[ssl_object] = identity
        return identity

    def of_certificate(self, ssl_object: ssl.SSLObject) -> ConnectionIdentity | None:
        """The identity of this TLS connection's client certificate, not remembered for
        the connection (the fast lane keeps it itself, and hands it over with `remember`).

        A resumed TLS session carries the certificate of its first handshake: the same DER
        bytes, so `identity_from_der` answers from its cache without parsing anything."""
        der = ssl_object.getpeercert(binary_form=True)
        return None if der is None else identity_from_der(der)

    def remember(self, transport: asyncio.BaseTransport, identity: ConnectionIdentity) -> None:
        """`identity` is this connection's (the app's requests find it without asking)."""
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._by_connection[ssl_object] = identity

    def trusted_proxy(self, host: str) -> bool:
        """Whether `host` is a configured trusted proxy (its requests may carry the
        client certificate in a header, so their identity is per request)."""
        if not self._proxies or not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    @property
    def connections_seen(self) -> int:
        return len(self._by_connection)
